"""Command line of the operator: ``python -m fastship_operator [--namespace NS]``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from fastship_operator.kube import in_cluster_namespace

NAMESPACE_ENV = "FASTSHIP_OPERATOR_NAMESPACE"
LOG_LEVEL_ENV = "FASTSHIP_OPERATOR_LOG_LEVEL"
LIVENESS_ENV = "FASTSHIP_OPERATOR_LIVENESS"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
METRICS_ENV = "FASTSHIP_OPERATOR_METRICS"
DEFAULT_METRICS = "0.0.0.0:8081"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(Exception):
    """Bad command line or environment; the message says what to change."""


def resolve_namespace(flag: str | None, environ: Mapping[str, str], namespace_file: Path) -> str:
    """``--namespace``, else ``FASTSHIP_OPERATOR_NAMESPACE``, else the pod's own namespace."""
    namespace = flag or environ.get(NAMESPACE_ENV) or in_cluster_namespace(namespace_file)
    if not namespace:
        raise UsageError(
            f"no namespace to watch: pass --namespace, set {NAMESPACE_ENV}, "
            f"or run in a pod (reads {namespace_file})"
        )
    return namespace


class _KopfExtras(logging.Filter):
    """Turn kopf's per-object log attributes into one plain ``object`` field."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = record.__dict__.pop("k8s_ref", None)
        record.__dict__.pop("k8s_skip", None)
        record.__dict__.pop("settings", None)
        if isinstance(ref, Mapping) and ref.get("name"):
            kind = ref.get("kind", "")
            namespace = ref.get("namespace")
            record.__dict__["object"] = (
                f"{kind}/{namespace}/{ref['name']}" if namespace else f"{kind}/{ref['name']}"
            )
        return True


def configure_logging(level: str) -> None:
    """JSON lines on stdout, in the same shape as the service's logs."""
    from app.core.logging import configure_logging as configure_app_logging

    configure_app_logging(level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_KopfExtras())
    # kopf logs every handler call and probe at INFO: one line per watch event. The
    # operator's own lines (fastship_operator) say what changed; kopf's stay at DEBUG.
    if level != "DEBUG":
        for name in ("kopf.objects", "kopf.activities.probe"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastship_operator",
        description=(
            "fastship's operator: runs Migration resources as migration Jobs and rolls out "
            "validated AppConfig resources. Watches one namespace."
        ),
    )
    parser.add_argument(
        "--namespace",
        help=f"namespace to watch (default: ${NAMESPACE_ENV}, else the pod's own namespace)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get(LIVENESS_ENV, DEFAULT_LIVENESS),
        help=f"liveness endpoint URL, or 'off' (default: {DEFAULT_LIVENESS}, or ${LIVENESS_ENV})",
    )
    parser.add_argument(
        "--metrics",
        default=os.environ.get(METRICS_ENV, DEFAULT_METRICS),
        help=f"host:port of /metrics and /readyz, or 'off' (default: {DEFAULT_METRICS}, "
        f"or ${METRICS_ENV})",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
        help=f"log level (default: INFO, or ${LOG_LEVEL_ENV})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:
        parser.error(f"{LOG_LEVEL_ENV} must be one of {', '.join(LOG_LEVELS)}")
    try:
        namespace = resolve_namespace(args.namespace, os.environ, SERVICE_ACCOUNT_NAMESPACE)
    except UsageError as exc:
        parser.error(str(exc))
    liveness = None if args.liveness.lower() == "off" else args.liveness
    if liveness and not liveness.startswith("http://"):
        parser.error(f"--liveness must be an http:// URL or 'off', not {args.liveness!r}")

    metrics = args.metrics.strip()
    if metrics.lower() != "off":
        _, colon, port = metrics.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            parser.error(f"--metrics must be host:port (e.g. {DEFAULT_METRICS}) or 'off'")
    # The handlers read these at start-up (the chart sets the others directly).
    os.environ[NAMESPACE_ENV] = namespace
    os.environ[METRICS_ENV] = metrics

    configure_logging(args.log_level)
    import kopf

    import fastship_operator.handlers  # noqa: F401  (registers the handlers)

    logging.getLogger("fastship_operator").info(
        "watching namespace %s", namespace, extra={"liveness": liveness or "off"}
    )
    kopf.run(
        namespaces=[namespace],
        standalone=True,
        liveness_endpoint=liveness,
    )
    return 0
