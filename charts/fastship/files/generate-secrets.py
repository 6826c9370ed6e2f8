"""Create the release's generated Secrets once, inside the cluster; never change one.

Run by the chart's `<fullname>-secrets` Job with the fastship image (standard library
only). The chart renders no secret value: renders stay byte-identical, and tools that
render without cluster access (Argo CD, `helm template | kubectl apply`) cannot rotate a
key by syncing. Each Secret is created with a POST; when it already exists (HTTP 409) it
is left exactly as it is, so the Job's ServiceAccount needs only `create` on Secrets.

FASTSHIP_SECRETS is a JSON list of
    {"name": ..., "labels": {...}, "annotations": {...},
     "data": {KEY: {"random": LENGTH} | {"value": TEXT} | {"format": "...{KEY}..."}}}
where a `format` entry is filled with the other keys of the same Secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import string
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ALPHABET = string.ascii_letters + string.digits


def secret_data(spec: dict[str, Any]) -> dict[str, str]:
    plain: dict[str, str] = {}
    for key, how in spec["data"].items():
        if "random" in how:
            plain[key] = "".join(secrets.choice(ALPHABET) for _ in range(int(how["random"])))
        elif "value" in how:
            plain[key] = str(how["value"])
    for key, how in spec["data"].items():
        if "format" in how:
            plain[key] = how["format"].format(**plain)
    return {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}


def main() -> int:
    sa_dir = Path(
        os.environ.get(
            "FASTSHIP_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount"
        )
    )
    token = (sa_dir / "token").read_text().strip()
    namespace = os.environ.get("FASTSHIP_NAMESPACE") or (sa_dir / "namespace").read_text().strip()
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = f"[{host}]"
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    url = f"https://{host}:{port}/api/v1/namespaces/{namespace}/secrets"
    context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    failed = 0
    for spec in json.loads(os.environ["FASTSHIP_SECRETS"]):
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": spec["name"],
                "namespace": namespace,
                "labels": spec.get("labels", {}),
                "annotations": spec.get("annotations", {}),
            },
            "type": "Opaque",
            "data": secret_data(spec),
        }
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            # The URL is https to the API server, built above from the pod's environment.
            with urllib.request.urlopen(request, context=context, timeout=30):  # noqa: S310
                print(f"secret {namespace}/{spec['name']}: created", flush=True)
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                print(f"secret {namespace}/{spec['name']}: exists, left unchanged", flush=True)
                continue
            detail = exc.read().decode(errors="replace")[:500]
            print(f"secret {namespace}/{spec['name']}: HTTP {exc.code}: {detail}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
