"""The operator's own API client and its login, against the real API server.

Credentials are read by kopf's login functions (from the kubeconfig here: a pod's
ServiceAccount login is tested with the image, in tests/image/test_operator.py); the
requests go through aiohttp on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import kopf
import pytest
import yaml

from fastship_operator import handlers
from fastship_operator.kube import (
    FIELD_MANAGER,
    ApiError,
    Kube,
    api_message,
    load_credentials,
)
from tests.operator.conftest import get
from tests.operator.harness import OPERATOR_SA, service_account_kubeconfig, token_kubeconfig
from tests.support.kube import Kube as Cluster
from tests.support.waiting import wait_until


@pytest.fixture(autouse=True)
def _not_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests log in with a kubeconfig, also when they run in a pod themselves."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def write_kubeconfig(
    path: Path, server: str, cluster: dict[str, Any], user: dict[str, Any]
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "someone", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "someone"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclasses.dataclass
class AdminTLS:
    """The test cluster's address, CA and the admin's client certificate, as PEM."""

    server: str
    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def of(cls, cluster: Cluster) -> AdminTLS:
        raw = json.loads(
            cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
        )
        entry, user = raw["clusters"][0]["cluster"], raw["users"][0]["user"]

        def pem(source: dict[str, Any], key: str) -> bytes:
            if source.get(f"{key}-data"):
                return base64.b64decode(source[f"{key}-data"])
            return Path(source[key]).read_bytes() if source.get(key) else b""

        tls = cls(
            server=entry["server"],
            ca=pem(entry, "certificate-authority"),
            cert=pem(user, "client-certificate"),
            key=pem(user, "client-key"),
        )
        assert tls.ca, "the cluster's kubeconfig has its CA"
        assert tls.cert, "the cluster's admin logs in with a client certificate"
        assert tls.key, "the cluster's admin logs in with a client certificate"
        return tls

    def files(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / name for name in ("ca.crt", "admin.crt", "admin.key")}
        for (_, path), content in zip(paths.items(), (self.ca, self.cert, self.key), strict=True):
            path.write_bytes(content)
        return paths


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def client(
    credentials: kopf.ConnectionInfo, **options: Any
) -> Iterator[tuple[asyncio.Runner, Kube]]:
    """A client on an event loop of its own, closed afterwards."""
    with asyncio.Runner() as runner:
        api = Kube(credentials, **options)
        try:
            yield runner, api
        finally:
            runner.run(api.close())


@pytest.fixture
def operator_kubeconfig(
    kube: Cluster, restricted_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """KUBECONFIG: a token of the operator's ServiceAccount in ``restricted_namespace``."""
    path = service_account_kubeconfig(kube, restricted_namespace, tmp_path / "operator.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def counting(logins: list[kopf.ConnectionInfo]) -> Callable[[], kopf.ConnectionInfo]:
    def relogin() -> kopf.ConnectionInfo:
        logins.append(load_credentials())
        return logins[-1]

    return relogin


async def username(api: Kube) -> str:
    """Who the API server takes the client for."""
    review = await api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def test_json_requests_with_a_service_account_token(
    kube: Cluster, crds: None, restricted_namespace: str, operator_kubeconfig: Path
) -> None:
    ns = restricted_namespace
    credentials = load_credentials()
    assert credentials.token
    assert not credentials.certificate_path
    assert not credentials.certificate_data
    spec = {
        "image": "registry.example/fastship:1",
        "databaseSecretRef": {"name": "db", "key": "uri"},
    }
    kube.apply(
        {
            "apiVersion": "fastship.dev/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": "m"},
            "spec": spec,
        },
        namespace=ns,
    )
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"}, "data": {}}

    async def scenario(api: Kube) -> None:
        assert await username(api) == f"system:serviceaccount:{ns}:{OPERATOR_SA}"
        assert await api.get_configmap(ns, "k") is None
        created = await api.create_configmap(ns, {**configmap, "data": {"a": "1"}})
        assert [f["manager"] for f in created["metadata"]["managedFields"]] == [FIELD_MANAGER]
        with pytest.raises(ApiError) as conflict:
            await api.create_configmap(ns, configmap)
        assert conflict.value.status == 409
        assert api_message(conflict.value) == 'configmaps "k" already exists'
        replaced = await api.replace_configmap(ns, {**created, "data": {"a": "2"}})
        assert replaced["data"] == {"a": "2"}

        # Status writes are merge patches: what a patch does not name stays.
        await api.patch_status(ns, "migrations", "m", {"phase": "Running", "message": "one"})
        patched = await api.patch_status(ns, "migrations", "m", {"phase": "Succeeded"})
        assert patched["status"] == {"phase": "Succeeded", "message": "one"}
        assert patched["spec"]["image"] == spec["image"]
        assert (await api.get_custom(ns, "migrations", "m") or {})["status"] == patched["status"]

        # Missing is None for reads only; refused requests carry the server's words.
        assert await api.get_deployment(ns, "absent") is None
        with pytest.raises(ApiError) as missing:
            await api.patch_deployment(ns, "absent", {"metadata": {"labels": {"a": "b"}}})
        assert missing.value.status == 404
        with pytest.raises(ApiError) as forbidden:
            await api.get(f"/api/v1/namespaces/{ns}/secrets/any")
        assert forbidden.value.status == 403
        assert 'cannot get resource "secrets"' in api_message(forbidden.value)
        assert str(forbidden.value).startswith(
            f"GET /api/v1/namespaces/{ns}/secrets/any: 403 Forbidden: "
        )
        assert await api.list_pods(ns, "app=none") == []

    with client(credentials) as (runner, api):
        runner.run(scenario(api))
    stored = get(kube, "configmap", "k", ns)
    assert stored is not None
    assert stored["data"] == {"a": "2"}


@pytest.mark.parametrize("layout", ["files", "data", "relative", "relative-in-a-second-file"])
def test_client_certificate_and_ca(
    kube: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    tls = AdminTLS.of(kube)
    conf = tmp_path / "conf"
    kubeconfig = conf / "kubeconfig"
    if layout == "data":
        write_kubeconfig(
            kubeconfig,
            tls.server,
            {"certificate-authority-data": b64(tls.ca)},
            {"client-certificate-data": b64(tls.cert), "client-key-data": b64(tls.key)},
        )
        kubeconfigs = [kubeconfig]
    else:
        paths = tls.files(conf / "pki")
        names = {
            key: str(path if layout == "files" else path.relative_to(conf))
            for key, path in paths.items()
        }
        write_kubeconfig(
            kubeconfig,
            tls.server,
            {"certificate-authority": names["ca.crt"]},
            {"client-certificate": names["admin.crt"], "client-key": names["admin.key"]},
        )
        kubeconfigs = [kubeconfig]
        if layout == "relative-in-a-second-file":
            # The first file names the context; the cluster and user come from the second
            # one, so their relative names are relative to the second file's folder.
            config = yaml.safe_load(kubeconfig.read_text())
            first = tmp_path / "first" / "kubeconfig"
            first.parent.mkdir()
            first.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "contexts": [
                            {"name": "mine", "context": {"cluster": "test", "user": "someone"}}
                        ],
                        "current-context": "mine",
                    }
                )
            )
            del config["current-context"]
            kubeconfig.write_text(yaml.safe_dump(config))
            kubeconfigs = [first, kubeconfig]
    # Relative names must not be taken relative to the working directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", ":".join(map(str, kubeconfigs)))

    credentials = load_credentials()
    if layout == "data":
        assert credentials.certificate_data
        assert credentials.ca_data
        assert not credentials.certificate_path
    else:
        assert credentials.certificate_path == str(conf / "pki" / "admin.crt")
        assert credentials.private_key_path == str(conf / "pki" / "admin.key")
        assert credentials.ca_path == str(conf / "pki" / "ca.crt")
    admin = kube.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    with client(credentials) as (runner, api):
        assert runner.run(username(api)) == admin


def test_insecure_skip_tls_verify(
    kube: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = AdminTLS.of(kube)
    user = {"client-certificate-data": b64(tls.cert), "client-key-data": b64(tls.key)}
    insecure = write_kubeconfig(
        tmp_path / "insecure", tls.server, {"insecure-skip-tls-verify": True}, user
    )
    # No CA: the system's trust store, which does not know the test cluster's CA.
    unverified = write_kubeconfig(tmp_path / "unverified", tls.server, {}, user)
    monkeypatch.setenv("KUBECONFIG", str(insecure))
    with client(load_credentials()) as (runner, api):
        assert runner.run(username(api))
        monkeypatch.setenv("KUBECONFIG", str(unverified))
        api.use(load_credentials())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            runner.run(username(api))


def test_a_refused_token_is_read_again_and_the_request_sent_once_more(
    kube: Cluster, restricted_namespace: str, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    ns = restricted_namespace
    stale = tmp_path / "stale.kubeconfig"
    stale.write_text(operator_kubeconfig.read_text())

    def refused() -> bool:
        command = ("get", "configmaps", "-n", ns)
        proc = kube.run("kubectl", "--kubeconfig", str(stale), *command, check=False)
        return "Unauthorized" in proc.stderr

    first = load_credentials()
    logins: list[kopf.ConnectionInfo] = []
    with client(first, relogin=counting(logins)) as (runner, api):
        assert runner.run(api.get_configmap(ns, "x")) is None
        # A new ServiceAccount of the same name: the old one's tokens are refused (401).
        kube.kubectl("delete", "serviceaccount", OPERATOR_SA, "-n", ns, "--wait=true")
        service_account_kubeconfig(kube, ns, operator_kubeconfig)
        wait_until(refused, timeout=30, interval=0.5, what="the old token to be refused")

        assert runner.run(api.get_configmap(ns, "x")) is None
        assert len(logins) == 1
        assert api.credentials is logins[0]
        assert api.credentials.token not in (None, first.token)
        assert runner.run(api.get_configmap(ns, "x")) is None
        assert len(logins) == 1, "no login while the token is accepted"

        # Requests refused at the same time log in once between them.
        api.use(first)

        async def together() -> list[dict[str, Any] | None]:
            return await asyncio.gather(*(api.get_configmap(ns, f"x{i}") for i in range(5)))

        assert runner.run(together()) == [None] * 5
        assert len(logins) == 2

        # Refused again after logging in: the 401 stands, after exactly one more login.
        operator_kubeconfig.write_text(stale.read_text())
        api.use(first)
        with pytest.raises(ApiError) as refusal:
            runner.run(api.get_configmap(ns, "x"))
        assert refusal.value.status == 401
        assert len(logins) == 3


def test_credentials_past_their_expiration_are_read_again_before_a_request(
    restricted_namespace: str, operator_kubeconfig: Path
) -> None:
    ns = restricted_namespace
    now = datetime.datetime.now(datetime.UTC)
    expirations = {
        "aware, past": (now - datetime.timedelta(seconds=1), 1),
        "naive (UTC), past": (now.replace(tzinfo=None) - datetime.timedelta(seconds=1), 1),
        "aware, to come": (now + datetime.timedelta(hours=1), 0),
    }
    for case, (expiration, relogins) in expirations.items():
        logins: list[kopf.ConnectionInfo] = []
        credentials = dataclasses.replace(load_credentials(), expiration=expiration)
        with client(credentials, relogin=counting(logins)) as (runner, api):
            assert runner.run(api.get_configmap(ns, "x")) is None
            assert runner.run(api.get_configmap(ns, "x")) is None
        assert len(logins) == relogins, case


def test_a_request_without_an_answer_times_out() -> None:
    async def main() -> float:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        api = Kube(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), timeout=0.5)
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(TimeoutError):
                await api.get_configmap("default", "x")
            return asyncio.get_running_loop().time() - started
        finally:
            await api.close()
            server.close()

    assert asyncio.run(main()) < 5


def test_without_usable_credentials_the_login_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    with pytest.raises(kopf.LoginError, match="no Kubernetes credentials"):
        load_credentials()

    missing = tmp_path / "missing.yaml"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(kopf.LoginError, match=f"unusable kubeconfig {missing}"):
        load_credentials()

    plugin = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "login"}}
    exec_only = write_kubeconfig(
        tmp_path / "exec.yaml", "https://127.0.0.1:6443", {"insecure-skip-tls-verify": True}, plugin
    )
    monkeypatch.setenv("KUBECONFIG", str(exec_only))
    with pytest.raises(kopf.LoginError, match="exec and auth-provider plugins are not run"):
        load_credentials()


def test_the_login_handler_gives_kopf_the_credentials_of_the_client(
    kube: Cluster, restricted_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = restricted_namespace
    first = service_account_kubeconfig(kube, ns, tmp_path / "first.kubeconfig")
    second = token_kubeconfig(kube, ns, OPERATOR_SA, tmp_path / "second.kubeconfig")

    def token(path: Path) -> str:
        return str(yaml.safe_load(path.read_text())["users"][0]["user"]["token"])

    # As kopf calls it (its decorator types the function as kopf's own callback).
    login = cast(Any, handlers.login)
    memo = kopf.Memo()
    settings = kopf.OperatorSettings()
    with asyncio.Runner() as runner:
        # KUBECONFIG as it is at each login.
        monkeypatch.setenv("KUBECONFIG", str(first))
        given = runner.run(login(settings=settings, memo=memo))
        made = handlers.state(memo).kube
        try:
            assert made is not None
            assert made.credentials is given
            assert given.token == token(first)

            monkeypatch.setenv("KUBECONFIG", str(second))
            again = runner.run(login(settings=settings, memo=memo))
            assert handlers.state(memo).kube is made
            assert made.credentials is again
            assert again.token == token(second) != token(first)
            assert runner.run(made.get_configmap(ns, "x")) is None
        finally:
            runner.run(handlers.state(memo).close())
