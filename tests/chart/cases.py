"""The values matrix that the chart is rendered and validated with."""

from __future__ import annotations

import itertools
from typing import Any

EXTERNAL_DB = {"existingSecret": "team-db", "uriKey": "url"}

POSTGRES_MODES: dict[str, dict[str, Any]] = {
    "bundled": {"mode": "bundled"},
    "external": {"mode": "external", "external": EXTERNAL_DB},
    "cnpg": {"mode": "cloudnativepg"},
}

MIGRATIONS: dict[str, dict[str, Any]] = {
    # the default: the operator runs the migrations
    "operator": {"migrations": {"mode": "operator"}, "operator": {"enabled": True}},
    # no CRD rights: hook Job, no operator
    "hook": {"migrations": {"mode": "hook"}, "operator": {"enabled": False}},
    # hook Job while the operator still rolls out config
    "hook+op": {"migrations": {"mode": "hook"}, "operator": {"enabled": True}},
}

HPA: dict[str, dict[str, Any]] = {
    "fixed": {"autoscaling": {"enabled": False}},
    "hpa": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}},
}

FEATURES: dict[str, dict[str, Any]] = {
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
            "hosts": [{"host": "api.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "api-tls", "hosts": ["api.example.com"]}],
        }
    },
    "httproute": {
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
            "hostnames": ["api.example.com"],
        }
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "podDisruptionBudget": {"minAvailable": "50%"},
    },
    "minimal": {
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "topologySpread": {"enabled": False},
        "serviceAccount": {"create": False, "name": "existing-sa"},
        "preStopSleepSeconds": 0,
        "config": {},
    },
    "extras": {
        "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "auth": {"existingSecret": "jwt", "secretKey": "key"},
        "config": {"log_level": "DEBUG", "signup_enabled": "false", "cors_origins": "a,b"},
        "extraEnv": [
            {
                "name": "FASTSHIP_REDIS_URL",
                "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
            }
        ],
        "extraEnvFrom": [{"secretRef": {"name": "more-env"}}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "ca-bundle"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True}],
        "podAnnotations": {"example.com/team": "api"},
        "podLabels": {"example.com/tier": "web"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "api"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}},
                        },
                    }
                ]
            }
        },
        "priorityClassName": "high",
        "networkPolicy": {
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}],
            "extraEgress": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 6379}]}
            ],
        },
        "migrations": {"command": ["python", "-m", "app", "migrate"]},
        "postgresql": {
            "bundled": {"persistence": {"existingClaim": "old-data", "storageClass": "fast"}}
        },
        "commonLabels": {"example.com/cost-center": "42"},
    },
    # As an umbrella chart's dependency, delivered by a GitOps tool.
    "gitops": {
        "migrations": {
            "mode": "job",
            "jobAnnotations": {"argocd.argoproj.io/sync-wave": "1"},
        },
        "operator": {"enabled": False},
        "global": {"imageRegistry": "registry.example.com", "imagePullSecrets": ["global-cred"]},
        "imagePullSecrets": [{"name": "regcred"}],
        "commonAnnotations": {"example.com/owner": "team-a"},
        "extraObjects": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "{{ .Release.Name }}-extra",
                    "namespace": "{{ .Release.Namespace }}",
                    "labels": {
                        "helm.sh/chart": "{{ .Chart.Name }}-{{ .Chart.Version }}",
                        "app.kubernetes.io/name": "fastship",
                        "app.kubernetes.io/instance": "{{ .Release.Name }}",
                        "app.kubernetes.io/component": "extra",
                        "app.kubernetes.io/part-of": "fastship",
                        "app.kubernetes.io/version": "{{ .Chart.AppVersion }}",
                        "app.kubernetes.io/managed-by": "{{ .Release.Service }}",
                    },
                },
                "data": {"owner": "team-a"},
            }
        ],
    },
    "external+hook+peers": {
        "postgresql": {
            "mode": "external",
            "external": {
                **EXTERNAL_DB,
                "port": 6432,
                "networkPolicyPeers": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
            },
        },
        "migrations": {"mode": "hook"},
        "operator": {"enabled": False},
    },
}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of value maps, later ones winning."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def matrix() -> dict[str, dict[str, Any]]:
    """Case id -> values: HPA x Postgres mode x migrations mode, plus feature cases."""
    cases: dict[str, dict[str, Any]] = {"defaults": {}}
    for (h, hv), (p, pv), (m, mv) in itertools.product(
        HPA.items(), POSTGRES_MODES.items(), MIGRATIONS.items()
    ):
        cases[f"{h}-{p}-{m}"] = merge(hv, {"postgresql": pv}, mv)
    cases.update(FEATURES)
    return cases


MATRIX = matrix()
