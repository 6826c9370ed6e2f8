"""`helm template` over the values matrix: strict schemas and assertions on the objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.cases import MATRIX, merge
from tests.chart.checks import (
    assert_common,
    crd_schemas,
    read_rbac_rules,
)
from tests.chart.conftest import (
    NAMESPACE,
    RELEASE,
    Rendered,
    RenderErrorFn,
    RenderFn,
    run_template,
)

# Kubernetes minors inside the chart's kubeVersion (>=1.29.0-0) that every case is
# validated against: the oldest supported, one in the middle, the local control plane's,
# and the newest that kubernetes-validate knows.
KUBE_VERSIONS = ("1.29.0", "1.32.0", "1.36.0", "1.37.0")
FULLNAME = f"{RELEASE}-fastship"
IMAGE = "fastship:0.1.0"


def server(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", FULLNAME)


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name} in {obj['metadata']['name']}")


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def db_ref(values: dict[str, Any]) -> dict[str, str]:
    mode = values.get("postgresql", {}).get("mode", "bundled")
    if mode == "external":
        ext = values["postgresql"]["external"]
        return {"name": ext["existingSecret"], "key": ext.get("uriKey", "uri")}
    if mode == "cloudnativepg":
        return {"name": f"{FULLNAME}-postgresql-app", "key": "uri"}
    return {"name": f"{FULLNAME}-postgresql", "key": "uri"}


@pytest.mark.parametrize("case", list(MATRIX))
def test_matrix_renders_valid_objects(case: str, render: RenderFn) -> None:
    values = MATRIX[case]
    outputs = {v: render(values, kube_version=v) for v in KUBE_VERSIONS}
    for version, rendered in outputs.items():
        assert_common(rendered, version)

    rendered = outputs[KUBE_VERSIONS[-1]]
    hpa = values.get("autoscaling", {}).get("enabled", True)
    operator = values.get("operator", {}).get("enabled", True)
    migrations = values.get("migrations", {}).get("mode", "operator")
    deploy = server(rendered)

    # With the HPA on the Deployment has no replicas, so upgrades never reset the count.
    if hpa:
        assert "replicas" not in deploy["spec"]
        assert rendered.get("HorizontalPodAutoscaler", FULLNAME)["spec"]["behavior"]
    else:
        assert deploy["spec"]["replicas"] == 2
        assert not rendered.has("HorizontalPodAutoscaler")
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # Every container that talks to the database gets its URL from the mode's Secret.
    ref = db_ref(values)
    url = {"secretKeyRef": ref}
    assert env(container(deploy, "server"))["FASTSHIP_DATABASE_URL"] == url
    assert env(container(deploy, "wait-for-schema"))["FASTSHIP_DATABASE_URL"] == url
    server_env = env(container(deploy, "server"))
    assert server_env["FASTSHIP_HOST"] == "0.0.0.0"  # noqa: S104
    assert server_env["FASTSHIP_ENVIRONMENT"] == "production"
    assert server_env["FASTSHIP_JWT_SECRET_KEY"]["secretKeyRef"]["name"]
    envfrom = container(deploy, "server")["envFrom"][0]["configMapRef"]
    assert envfrom == {"name": f"{FULLNAME}-config", "optional": True}

    if migrations == "operator":
        migration = rendered.get("Migration", FULLNAME)["spec"]
        assert migration["image"] == container(deploy, "server")["image"]
        assert migration["databaseSecretRef"] == ref
        assert migration["deploymentRef"] == {"name": FULLNAME}
        assert not rendered.has("Job", f"{FULLNAME}-migrate")
    else:
        jobs = [
            j
            for j in rendered.all("Job")
            if j["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
        ]
        assert len(jobs) == 1
        assert env(container(jobs[0], "migrate"))["FASTSHIP_DATABASE_URL"] == url
        assert env(container(jobs[0], "wait-for-database"))["FASTSHIP_DATABASE_URL"] == url
        assert not rendered.has("Migration")

    if operator:
        assert rendered.has("AppConfig", FULLNAME)
        assert rendered.has("Deployment", f"{FULLNAME}-operator")
        assert not rendered.has("ConfigMap", f"{FULLNAME}-config")
    else:
        assert rendered.get("ConfigMap", f"{FULLNAME}-config")
        assert not rendered.has("AppConfig")
        assert not rendered.has("Deployment", f"{FULLNAME}-operator")
        assert "checksum/config" in deploy["spec"]["template"]["metadata"]["annotations"]


def test_matrix_covers_the_issue(render: RenderFn) -> None:
    """HPA on/off, each Postgres mode, each migrations mode, ingress, HTTPRoute, operator."""
    seen: set[str] = set()
    for values in MATRIX.values():
        seen.add("hpa" if values.get("autoscaling", {}).get("enabled", True) else "fixed")
        seen.add("pg:" + values.get("postgresql", {}).get("mode", "bundled"))
        seen.add("mig:" + values.get("migrations", {}).get("mode", "operator"))
        seen.add("op:" + str(values.get("operator", {}).get("enabled", True)))
        seen.update(k for k in ("ingress", "httpRoute") if values.get(k, {}).get("enabled"))
    assert seen >= {
        "hpa",
        "fixed",
        "pg:bundled",
        "pg:external",
        "pg:cloudnativepg",
        "mig:operator",
        "mig:hook",
        "op:True",
        "op:False",
        "ingress",
        "httpRoute",
    }
    assert len(MATRIX) >= 20


def test_kube_version_below_range_is_refused(render_error: RenderErrorFn) -> None:
    assert "kubeVersion" in render_error(kube_version="1.28.0")


def test_defaults(render: RenderFn) -> None:
    rendered = render()
    assert rendered.kinds() == sorted(
        [
            "AppConfig",
            "ClusterRole",
            "ClusterRole",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Migration",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Pod",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "ConfigMap",
            "Job",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    deploy = server(rendered)
    pod = deploy["spec"]["template"]["spec"]
    # Scaled by the HPA out of the box, from 2 to 10 pods on CPU.
    assert "replicas" not in deploy["spec"]
    hpa = rendered.get("HorizontalPodAutoscaler", FULLNAME)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert container(deploy, "server")["image"] == IMAGE
    assert "args" not in container(deploy, "server")  # the image's CMD serves
    assert container(deploy, "wait-for-schema")["args"] == [
        "python",
        "-m",
        "app",
        "wait-for-schema",
        "--timeout",
        "600",
    ]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == FULLNAME
    assert rendered.get("ServiceAccount", FULLNAME)["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["terminationGracePeriodSeconds"] > 5 + 25
    server_c = container(deploy, "server")
    assert server_c["lifecycle"]["preStop"]["exec"]["command"][0] == "python"
    assert server_c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert server_c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server_c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server_c["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert env(server_c)["FASTSHIP_METRICS_PORT"] == "9090"
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    pdb = rendered.get("PodDisruptionBudget", FULLNAME)["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    svc = rendered.get("Service", FULLNAME)["spec"]
    assert svc["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert svc["ports"][0]["targetPort"] == "http"
    appconfig = rendered.get("AppConfig", FULLNAME)["spec"]
    assert appconfig == {"deploymentRef": {"name": FULLNAME}, "settings": {}}


def secrets_job(rendered: Rendered) -> dict[str, Any] | None:
    """The `<fullname>-secrets-<hash>` Job, or None."""
    jobs = [
        j
        for j in rendered.all("Job")
        if j["metadata"]["labels"]["app.kubernetes.io/component"] == "secrets"
    ]
    assert len(jobs) <= 1
    return jobs[0] if jobs else None


def generated_secrets(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Name -> spec of the Secrets that the `-secrets` Job creates in the cluster."""
    job = secrets_job(rendered)
    if job is None:
        return {}
    specs = json.loads(env(container(job, "generate"))["FASTSHIP_SECRETS"])
    return {spec["name"]: spec for spec in specs}


def test_renders_are_deterministic(helm_bin: Path, tmp_path: Path) -> None:
    """No random data at render time: two renders of the defaults are byte-identical."""
    for values in ({}, MATRIX["hpa-cnpg-hook+op"], MATRIX["extras"]):
        first = run_template(helm_bin, values, tmp_path)
        second = run_template(helm_bin, values, tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stdout == second.stdout


def test_no_secret_value_is_rendered(render: RenderFn) -> None:
    """The chart renders no Secret: the `-secrets` Job creates the missing ones, once."""
    rendered = render()
    assert not rendered.has("Secret")
    deploy = server(rendered)
    assert "annotations" not in deploy["spec"]["template"]["metadata"]
    secrets = generated_secrets(rendered)
    assert sorted(secrets) == [f"{FULLNAME}-jwt", f"{FULLNAME}-postgresql"]
    assert secrets[f"{FULLNAME}-jwt"]["data"] == {"jwt-secret-key": {"random": 64}}
    assert secrets[f"{FULLNAME}-postgresql"]["data"] == {
        "username": {"value": "fastship"},
        "password": {"random": 32},
        "uri": {
            "format": f"postgresql://fastship:{{password}}@{FULLNAME}-postgresql:5432/fastship"
        },
    }
    for spec in secrets.values():
        # Not the release's objects: Argo CD neither prunes them nor reports them.
        assert "app.kubernetes.io/instance" not in spec["labels"]
        assert spec["labels"]["fastship.dev/release"] == RELEASE
        assert spec["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
        assert spec["annotations"]["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous"
    # The Job's rights: create Secrets, nothing else.
    role = rendered.get("Role", f"{FULLNAME}-secrets")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    job = secrets_job(rendered)
    assert job is not None
    assert job["metadata"]["name"].startswith(f"{FULLNAME}-secrets-")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{FULLNAME}-secrets"
    # Named after its pod template: under `kubectl apply` a new image is a new Job (a Job's
    # template cannot change in place); the same values give the same name.
    newer = secrets_job(render({"image": {"tag": "0.2.0"}}))
    assert newer is not None
    assert newer["metadata"]["name"] != job["metadata"]["name"]
    again = secrets_job(render())
    assert again is not None
    assert again["metadata"]["name"] == job["metadata"]["name"]
    # Any node: an upgrade that moves the service to nodes that do not exist (yet) must not
    # hang at this hook; the service's tolerations come along.
    placed = secrets_job(
        render(
            {
                "nodeSelector": {"pool": "none"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            }
        )
    )
    assert placed is not None
    assert "nodeSelector" not in placed["spec"]["template"]["spec"]
    assert placed["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Exists"}
    ]
    for obj in rendered.objects:
        if obj["metadata"]["name"].startswith(f"{FULLNAME}-secrets"):
            hook = obj["metadata"]["annotations"]["helm.sh/hook"]
            assert hook == "pre-install,pre-upgrade", obj["kind"]
    # Bring both Secrets, and there is nothing to generate: no Job, no rights.
    brought = render(
        {"auth": {"existingSecret": "jwt"}, "postgresql": {"bundled": {"existingSecret": "pg"}}}
    )
    assert not [
        o for o in brought.objects if o["metadata"]["name"].startswith(f"{FULLNAME}-secrets")
    ]
    assert sorted(generated_secrets(render(MATRIX["fixed-external-operator"]))) == [
        f"{FULLNAME}-jwt"
    ]


def test_bundled_postgres(render: RenderFn) -> None:
    rendered = render()
    name = f"{FULLNAME}-postgresql"
    sts = rendered.get("StatefulSet", name)
    assert sts["spec"]["replicas"] == 1
    pg = container(sts, "postgresql")
    assert pg["image"] == "postgres:17.6"
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999
    assert env(pg)["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": name, "key": "password"}}
    assert env(pg)["PGDATA"].startswith("/var/lib/postgresql/data/")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert pg[probe]["exec"]["command"][0] == "pg_isready"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{name}-data"
    pvc = rendered.get("PersistentVolumeClaim", f"{name}-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert name in generated_secrets(rendered)
    # Postgres accepts only this release's pods, on 5432, and connects nowhere.
    policy = rendered.get("NetworkPolicy", name)["spec"]
    assert policy["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    ]
    assert "egress" not in policy
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    # The operator's migration pods carry the label that the policy admits.
    labels = rendered.get("Migration", FULLNAME)["spec"]["podLabels"]
    assert labels == {"app.kubernetes.io/instance": RELEASE}


def test_bundled_postgres_existing_claim(render: RenderFn) -> None:
    rendered = render({"postgresql": {"bundled": {"persistence": {"existingClaim": "old"}}}})
    assert not rendered.has("PersistentVolumeClaim")
    sts = rendered.get("StatefulSet", f"{FULLNAME}-postgresql")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "old"


def test_bundled_postgres_takes_the_connections_of_a_fully_scaled_service(
    render: RenderFn,
) -> None:
    from app.core.config import Settings

    rendered = render()
    sts = rendered.get("StatefulSet", f"{FULLNAME}-postgresql")
    args = container(sts, "postgresql")["args"]
    limit = int(args[args.index("-c") + 1].removeprefix("max_connections="))
    replicas = rendered.get("HorizontalPodAutoscaler", FULLNAME)["spec"]["maxReplicas"]
    defaults = Settings.model_fields
    per_pod = defaults["db_pool_size"].default + defaults["db_max_overflow"].default
    # The service at full scale, a migration Job and a few administrative sessions.
    assert limit >= replicas * per_pod + 10, (limit, replicas, per_pod)

    raised = render({"postgresql": {"bundled": {"maxConnections": 500}}})
    args = container(raised.get("StatefulSet", f"{FULLNAME}-postgresql"), "postgresql")["args"]
    assert args == ["-c", "max_connections=500"]


def test_external_postgres(render: RenderFn) -> None:
    values = MATRIX["fixed-external-operator"]
    rendered = render(values)
    assert not rendered.has("StatefulSet")
    assert not rendered.has("PersistentVolumeClaim")
    assert list(generated_secrets(rendered)) == [f"{FULLNAME}-jwt"]
    egress = rendered.get("NetworkPolicy", FULLNAME)["spec"]["egress"]
    assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in egress
    peers = render(MATRIX["external+hook+peers"])
    egress = peers.get("NetworkPolicy", FULLNAME)["spec"]["egress"]
    assert {
        "ports": [{"port": 6432, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
    } in egress


def test_cloudnativepg(render: RenderFn) -> None:
    rendered = render(
        {
            "postgresql": {
                "mode": "cloudnativepg",
                "cloudnativepg": {
                    "instances": 2,
                    "imageName": "ghcr.io/cloudnative-pg/postgresql:17.6",
                    "storage": {"size": "20Gi", "storageClass": "fast"},
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                },
            }
        }
    )
    cluster = rendered.get("Cluster", f"{FULLNAME}-postgresql")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"] == {
        "instances": 2,
        "imageName": "ghcr.io/cloudnative-pg/postgresql:17.6",
        "bootstrap": {"initdb": {"database": "fastship", "owner": "fastship"}},
        "storage": {"size": "20Gi", "storageClass": "fast"},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
    }
    assert not rendered.has("StatefulSet")
    egress = rendered.get("NetworkPolicy", FULLNAME)["spec"]["egress"]
    cnpg = {"cnpg.io/cluster": f"{FULLNAME}-postgresql"}
    assert any(rule.get("to") == [{"podSelector": {"matchLabels": cnpg}}] for rule in egress)


@pytest.mark.parametrize(
    ("mode", "events"),
    [
        ("bundled", "post-install,pre-upgrade"),
        ("cloudnativepg", "post-install,pre-upgrade"),
        ("external", "pre-install,pre-upgrade"),
    ],
)
def test_hook_job(mode: str, events: str, render: RenderFn) -> None:
    pg: dict[str, Any] = {"mode": mode}
    if mode == "external":
        pg["external"] = {"existingSecret": "db"}
    hook = {"migrations": {"mode": "hook"}, "operator": {"enabled": False}}
    rendered = render({"postgresql": pg, **hook})
    job = rendered.get("Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == events
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert container(job, "migrate")["args"] == ["python", "-m", "app", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 2


def test_config_without_operator_is_a_configmap(render: RenderFn) -> None:
    config = {"log_level": "DEBUG", "cors_origins": "https://a.example,https://b.example"}
    values = merge(MATRIX["fixed-bundled-hook"], {"config": config})
    rendered = render(values)
    cm = rendered.get("ConfigMap", f"{FULLNAME}-config")
    assert cm["data"] == {
        "FASTSHIP_CORS_ORIGINS": "https://a.example,https://b.example",
        "FASTSHIP_LOG_LEVEL": "DEBUG",
    }
    annotations = server(rendered)["spec"]["template"]["metadata"]["annotations"]
    other = render(merge(values, {"config": {"log_level": "INFO"}}))
    other_annotations = server(other)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] != other_annotations["checksum/config"]


def test_config_with_operator_is_an_appconfig(render: RenderFn) -> None:
    rendered = render({"config": {"log_level": "WARNING", "signup_enabled": "false"}})
    spec = rendered.get("AppConfig", FULLNAME)["spec"]
    assert spec["settings"] == {"log_level": "WARNING", "signup_enabled": "false"}
    assert "annotations" not in server(rendered)["spec"]["template"]["metadata"]
    assert render().get("AppConfig", FULLNAME)["spec"]["settings"] == {}


def test_operator(render: RenderFn) -> None:
    rendered = render()
    name = f"{FULLNAME}-operator"
    deploy = rendered.get("Deployment", name)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    assert pod["automountServiceAccountToken"] is True
    op = container(deploy, "operator")
    assert op["args"] == ["python", "-m", "fastship_operator"]
    assert op["image"] == IMAGE
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert op["ports"][0]["containerPort"] == 8080
    assert env(op)["FASTSHIP_OPERATOR_NAMESPACE"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    # The probe's port and the port the operator serves its liveness on are one value.
    assert env(op)["FASTSHIP_OPERATOR_LIVENESS"] == "http://0.0.0.0:8080/healthz"
    role = rendered.get("Role", name)
    assert role["rules"] == read_rbac_rules()
    binding = rendered.get("RoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    # Cluster-wide only the roles aggregated into view/edit (for people), bound to no one.
    for cluster_role in rendered.all("ClusterRole"):
        assert "rbac.authorization.k8s.io/aggregate-to-edit" in cluster_role["metadata"]["labels"]
    assert not rendered.has("ClusterRoleBinding")
    policy = rendered.get("NetworkPolicy", name)["spec"]
    assert policy["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]}
    ]
    assert policy["egress"][1] == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]
    }


def test_crds_are_present_for_the_custom_resources() -> None:
    assert {"fastship.dev/v1alpha1/Migration", "fastship.dev/v1alpha1/AppConfig"} <= set(
        crd_schemas()
    )


def test_network_policy_of_the_service(render: RenderFn) -> None:
    policy = render().get("NetworkPolicy", FULLNAME)["spec"]
    assert policy["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}]},
        {"ports": [{"port": "metrics", "protocol": "TCP"}]},
    ]
    dns, postgres = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert postgres["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert postgres["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "postgresql"
    )
    extras = render(MATRIX["extras"]).get("NetworkPolicy", FULLNAME)["spec"]
    assert extras["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"name": "ingress"}}}
    ]
    assert extras["egress"][-1]["ports"] == [{"port": 6379}]
    assert not render(MATRIX["minimal"]).has("NetworkPolicy")


def test_ingress_httproute_servicemonitor(render: RenderFn) -> None:
    ingress = render(MATRIX["ingress"]).get("Ingress", FULLNAME)["spec"]
    assert ingress["ingressClassName"] == "nginx"
    path = ingress["rules"][0]["http"]["paths"][0]
    assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
    assert ingress["tls"] == [{"secretName": "api-tls", "hosts": ["api.example.com"]}]

    route = render(MATRIX["httproute"]).get("HTTPRoute", FULLNAME)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "infra", "sectionName": "https"}
    ]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": FULLNAME, "port": 80}]

    monitoring = render(MATRIX["monitoring"])
    monitor = monitoring.get("ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitoring.get("PodDisruptionBudget", FULLNAME)["spec"] == {
        "minAvailable": "50%",
        "selector": server(monitoring)["spec"]["selector"],
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_extras(render: RenderFn) -> None:
    rendered = render(MATRIX["extras"])
    deploy = server(rendered)
    pod = deploy["spec"]["template"]["spec"]
    server_c = container(deploy, "server")
    assert server_c["image"] == "fastship:0.1.0@sha256:" + "ab" * 32
    assert server_c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert env(server_c)["FASTSHIP_JWT_SECRET_KEY"] == {
        "secretKeyRef": {"name": "jwt", "key": "key"}
    }
    assert env(server_c)["FASTSHIP_REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert server_c["envFrom"][1] == {"secretRef": {"name": "more-env"}}
    assert {"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True} in server_c[
        "volumeMounts"
    ]
    assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in pod["volumes"]
    assert pod["priorityClassName"] == "high"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    template_meta = deploy["spec"]["template"]["metadata"]
    assert template_meta["annotations"]["example.com/team"] == "api"
    assert template_meta["labels"]["example.com/tier"] == "web"
    assert "checksum/jwt-secret" not in template_meta["annotations"]
    assert not rendered.has("Secret", f"{FULLNAME}-jwt")
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["example.com/cost-center"] == "42"
    migration = rendered.get("Migration", FULLNAME)["spec"]
    assert migration["image"] == server_c["image"]
    assert migration["command"] == ["python", "-m", "app", "migrate"]


def test_minimal(render: RenderFn) -> None:
    rendered = render(MATRIX["minimal"])
    pod = server(rendered)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing-sa"
    assert not rendered.has("ServiceAccount", FULLNAME)
    assert "topologySpreadConstraints" not in pod
    assert "lifecycle" not in container(server(rendered), "server")
    assert not rendered.has("PodDisruptionBudget")


def test_helm_test_pod(render: RenderFn) -> None:
    pod = render().get("Pod", f"{FULLNAME}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    policy = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    # Not hook-succeeded: `helm test --logs` reads the logs after the Pod finished.
    assert policy == "before-hook-creation"
    assert pod["spec"]["restartPolicy"] == "Never"
    readyz = container(pod, "readyz")
    assert readyz["image"] == IMAGE
    assert f"http://{FULLNAME}:80/readyz" in readyz["args"][2]


def test_full_name_overrides(render: RenderFn) -> None:
    rendered = render({"fullnameOverride": "api"})
    assert rendered.has("Deployment", "api")
    assert rendered.has("Deployment", "api-operator")
    assert rendered.get("Migration", "api")["spec"]["deploymentRef"] == {"name": "api"}
    long = render(extra=("--set", "nameOverride=" + "n" * 40))
    for obj in long.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


def test_values_yaml_is_the_default(render: RenderFn) -> None:
    """Rendering with values.yaml passed explicitly changes nothing but generated secrets."""
    from tests.chart.conftest import CHART

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    a = render(defaults)
    b = render()
    assert a.kinds() == b.kinds()
    assert server(a)["spec"]["template"]["spec"] == server(b)["spec"]["template"]["spec"]


def test_bundled_postgres_existing_secret(render: RenderFn) -> None:
    rendered = render({"postgresql": {"bundled": {"existingSecret": "pg-creds"}}})
    assert list(generated_secrets(rendered)) == [f"{FULLNAME}-jwt"]
    sts = rendered.get("StatefulSet", f"{FULLNAME}-postgresql")
    password = env(container(sts, "postgresql"))["POSTGRES_PASSWORD"]
    assert password == {"secretKeyRef": {"name": "pg-creds", "key": "password"}}
    assert "annotations" not in sts["spec"]["template"]["metadata"]
    deploy = server(rendered)
    url = env(container(deploy, "server"))["FASTSHIP_DATABASE_URL"]
    assert url == {"secretKeyRef": {"name": "pg-creds", "key": "uri"}}
    assert rendered.get("Migration", FULLNAME)["spec"]["databaseSecretRef"] == {
        "name": "pg-creds",
        "key": "uri",
    }
