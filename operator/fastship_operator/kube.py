"""The operator's API access beyond what kopf does itself: a small JSON client on top of the
official ``kubernetes`` client, run in worker threads so that the event loop never blocks.

Objects go in and come out as plain dicts, exactly as the API server serves them; the
pure builders in this package produce and consume the same shape.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from fastship_operator import GROUP, VERSION

ApiException = k8s.ApiException
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0
FIELD_MANAGER = "fastship-operator"


def load_configuration() -> k8s.Configuration:
    """Credentials from the pod's ServiceAccount, else from the kubeconfig (``KUBECONFIG``).

    A private Configuration, not the library-wide default, so that nothing else in the
    process (tests, other clients) is affected.
    """
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        try:
            # KUBECONFIG as it is now: the library reads it only once, at import.
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
        except (k8s_config.ConfigException, OSError) as exc:
            raise kopf.LoginError(
                "no Kubernetes credentials: not in a pod with a ServiceAccount token, "
                f"and no usable kubeconfig (KUBECONFIG or ~/.kube/config): {exc}"
            ) from exc
    return configuration


def connection_info(configuration: k8s.Configuration) -> kopf.ConnectionInfo:
    """The same credentials in the form kopf uses for its own API access."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme: str | None = None
    token: str | None = None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace=None,
    )


def in_cluster_namespace(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def api_message(exc: ApiException) -> str:
    """The API server's own words for a failed request (its Status message)."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{exc.status} {exc.reason}"


class Kube:
    """JSON access to the few endpoints the operator needs."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        self.api = k8s.ApiClient(configuration)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        params = dict(query or {})
        if method in ("POST", "PUT", "PATCH"):
            params.setdefault("fieldManager", FIELD_MANAGER)
        serialized = self.api.param_serialize(
            method,
            path,
            header_params=headers,
            body=body,
            query_params=list(params.items()) or None,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT)
        data = response.read()  # type: ignore[no-untyped-call]
        text = data.decode() if data else ""
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(text) if text else None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        return await asyncio.to_thread(
            self._request, method, path, body=body, query=query, content_type=content_type
        )

    async def get(self, path: str) -> dict[str, Any] | None:
        """GET an object; None when it does not exist."""
        try:
            result = await self.request("GET", path)
        except ApiException as exc:
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
