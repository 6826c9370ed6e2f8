"""The operator's API access beyond what kopf does itself: a small asyncio JSON client on
aiohttp (kopf's own HTTP client), with credentials from kopf's own login functions.

Objects go in and come out as plain dicts, exactly as the API server serves them; the
pure builders in this package produce and consume the same shape.
"""

# Kept rather than lightkube or kr8s: numbers in bench/README.md ("the operator's client").

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import yaml

from fastship_operator import GROUP, VERSION

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0
FIELD_MANAGER = "fastship-operator"
USER_AGENT = "fastship/operator"


class ApiError(Exception):
    """The API server refused a request: its HTTP status and reason, and the response body
    (a Status object, whose message :func:`api_message` returns)."""

    def __init__(
        self, status: int, reason: str, body: str = "", *, method: str = "", path: str = ""
    ) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.body = body
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        message = api_message(self)
        detail = f"{self.status} {self.reason}"
        return f"{where}{detail}" if message == detail else f"{where}{detail}: {message}"


def api_message(exc: ApiError) -> str:
    """The API server's own words for a failed request (its Status message)."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{exc.status} {exc.reason}"


# --- credentials ---------------------------------------------------------------------------


def load_credentials(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """The operator's credentials, read now by kopf's own login functions.

    In a pod (``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT`` set, a
    ServiceAccount token mounted): the token and the cluster's CA. Otherwise the
    kubeconfig's current context, from ``KUBECONFIG`` as it is set at this call (else
    ``~/.kube/config``): a bearer token, a client certificate and key, a CA (as files or
    inline data), ``insecure-skip-tls-verify``. Exec and auth-provider plugins are not run.
    """
    settings = settings if settings is not None else kopf.OperatorSettings()
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        info = kopf.login_with_service_account(settings=settings)
        if info is not None:
            # The API server's address as the kubelet gives it to every pod (client-go uses
            # it too); kopf's default, kubernetes.default.svc, would need the cluster's DNS.
            host = f"[{host}]" if ":" in host else host
            return dataclasses.replace(info, server=f"https://{host}:{port}")
    source = _kubeconfig()
    try:
        info = kopf.login_with_kubeconfig(settings=settings)
        if info is not None:
            info = _absolute_paths(info)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError, kopf.LoginError) as exc:
        raise kopf.LoginError(f"unusable kubeconfig {source}: {exc!r}") from exc
    if info is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: not in a pod with a ServiceAccount token, "
            "and no kubeconfig (KUBECONFIG or ~/.kube/config)"
        )
    if not info.server:
        raise kopf.LoginError(f"the current context of kubeconfig {source} names no server")
    if not (info.token or info.certificate_path or info.certificate_data or info.username):
        raise kopf.LoginError(
            f"the current user of kubeconfig {source} has no token, client certificate or "
            "password (exec and auth-provider plugins are not run)"
        )
    return info


def _kubeconfig() -> str:
    """Where the kubeconfig is read from now: ``KUBECONFIG`` (a list of files), else the
    default file."""
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def _kubeconfig_files() -> list[Path]:
    """The kubeconfig files in the order kopf reads them: the first entry of a name wins."""
    parts = _kubeconfig().split(os.pathsep)
    return [Path(part.strip()).expanduser() for part in parts if part.strip()]


def _absolute_paths(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """A relative file name in a kubeconfig is relative to the kubeconfig file that holds
    it (as kubectl reads it); kopf's login passes it on as it is."""
    files = (info.ca_path, info.certificate_path, info.private_key_path)
    if all(not name or Path(os.fsdecode(name)).is_absolute() for name in files):
        return info
    docs = [(path, yaml.safe_load(path.read_text()) or {}) for path in _kubeconfig_files()]

    def first(section: str, name: str) -> tuple[Path, dict[str, Any]]:
        """The entry that kopf used (the first of that name), and its file's folder."""
        for path, doc in docs:
            for item in doc.get(section) or ():
                if item.get("name") == name:
                    return path.parent, dict(item.get(section[:-1]) or {})
        raise KeyError(f"no {section} entry {name!r}")

    current = next(d["current-context"] for _, d in docs if d.get("current-context") is not None)
    _, context = first("contexts", current)
    clusters, _ = first("clusters", context["cluster"])
    users, _ = first("users", context["user"])

    def absolute(name: Any, base: Path) -> str | None:
        return str(base / os.fsdecode(name)) if name else None

    return dataclasses.replace(
        info,
        ca_path=absolute(info.ca_path, clusters),
        certificate_path=absolute(info.certificate_path, users),
        private_key_path=absolute(info.private_key_path, users),
    )


def in_cluster_namespace(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    """One set of credentials, made ready for requests the way kopf makes its session."""

    credentials: kopf.ConnectionInfo
    server: str
    headers: Mapping[str, str]
    ssl: ssl.SSLContext
    expires: datetime.datetime | None

    @classmethod
    def of(cls, credentials: kopf.ConnectionInfo) -> _Endpoint:
        expires = credentials.expiration
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)  # kopf: naive means UTC
        return cls(
            credentials=credentials,
            server=str(credentials.server).rstrip("/"),
            headers=credentials.as_http_headers(),
            ssl=credentials.as_ssl_context(),
            expires=expires,
        )

    @property
    def expired(self) -> bool:
        return self.expires is not None and datetime.datetime.now(datetime.UTC) >= self.expires


class Kube:
    """JSON access to the few endpoints the operator needs, on the event loop.

    A request answered 401 (a rotated ServiceAccount token, a kubeconfig with a new
    token) logs in again with ``relogin`` and is sent once more; so is a request made after
    the credentials' ``expiration``. kopf does the same for its own requests.
    """

    def __init__(
        self,
        credentials: kopf.ConnectionInfo,
        *,
        relogin: Callable[[], kopf.ConnectionInfo] = load_credentials,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._relogin = relogin
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._endpoint = _Endpoint.of(credentials)

    @property
    def credentials(self) -> kopf.ConnectionInfo:
        """The credentials of the next request."""
        return self._endpoint.credentials

    def use(self, credentials: kopf.ConnectionInfo) -> None:
        """Send the next requests with these credentials; those in flight keep theirs."""
        self._endpoint = _Endpoint.of(credentials)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _login_again(self, failed: _Endpoint) -> _Endpoint:
        async with self._lock:
            if self._endpoint is failed:  # not yet replaced by a concurrent request
                self.use(self._relogin())
            return self._endpoint

    async def _send(
        self,
        endpoint: _Endpoint,
        method: str,
        path: str,
        params: Mapping[str, str],
        data: str | None,
        headers: Mapping[str, str],
    ) -> tuple[int, str, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT}, trust_env=endpoint.credentials.trust_env
            )
        async with self._session.request(
            method,
            endpoint.server + path,
            params=params,
            data=data,
            headers={**endpoint.headers, **headers},
            ssl=endpoint.ssl,
            proxy=endpoint.credentials.proxy_url,
            timeout=self._timeout,
        ) as response:
            return response.status, response.reason or "", (await response.read()).decode()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        headers = {"Accept": JSON}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        params = dict(query or {})
        if method in ("POST", "PUT", "PATCH"):
            params.setdefault("fieldManager", FIELD_MANAGER)
        endpoint = self._endpoint
        if endpoint.expired:
            endpoint = await self._login_again(endpoint)
        status, reason, text = await self._send(endpoint, method, path, params, data, headers)
        if status == 401:
            endpoint = await self._login_again(endpoint)
            status, reason, text = await self._send(endpoint, method, path, params, data, headers)
        if not 200 <= status <= 299:
            raise ApiError(status, reason, text, method=method, path=path)
        return json.loads(text) if text else None

    async def get(self, path: str) -> dict[str, Any] | None:
        """GET an object; None when it does not exist."""
        try:
            result = await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result)

    # --- paths ---------------------------------------------------------------------------

    @staticmethod
    def custom_path(namespace: str, plural: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{base}/{name}" if name else base

    @staticmethod
    def path(api: str, namespace: str, plural: str, name: str = "") -> str:
        prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
        base = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{base}/{name}" if name else base

    # --- operations ------------------------------------------------------------------------

    async def get_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return await self.get(self.custom_path(namespace, plural, name))

    async def list_custom(
        self, namespace: str, plural: str, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        query = {"limit": str(limit)} if limit else None
        result = await self.request("GET", self.custom_path(namespace, plural), query=query)
        return list(result.get("items") or [])

    async def patch_status(
        self, namespace: str, plural: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        result = await self.request(
            "PATCH",
            self.custom_path(namespace, plural, name) + "/status",
            body={"status": dict(status)},
            content_type=MERGE_PATCH,
        )
        return dict(result)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(self.path("batch/v1", namespace, "jobs", name))

    async def create_job(self, namespace: str, job: Mapping[str, Any]) -> dict[str, Any]:
        result = await self.request("POST", self.path("batch/v1", namespace, "jobs"), body=job)
        return dict(result)

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = await self.request(
            "GET", self.path("v1", namespace, "pods"), query={"labelSelector": selector}
        )
        return list(result.get("items") or [])

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(self.path("v1", namespace, "configmaps", name))

    async def create_configmap(self, namespace: str, cm: Mapping[str, Any]) -> dict[str, Any]:
        result = await self.request("POST", self.path("v1", namespace, "configmaps"), body=cm)
        return dict(result)

    async def replace_configmap(self, namespace: str, cm: Mapping[str, Any]) -> dict[str, Any]:
        name = cm["metadata"]["name"]
        result = await self.request("PUT", self.path("v1", namespace, "configmaps", name), body=cm)
        return dict(result)

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(self.path("apps/v1", namespace, "deployments", name))

    async def patch_deployment(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        result = await self.request(
            "PATCH",
            self.path("apps/v1", namespace, "deployments", name),
            body=dict(patch),
            content_type=MERGE_PATCH,
        )
        return dict(result)
