"""fastship: a FastAPI service built to run on Kubernetes."""

import os


def _version() -> str:
    # The container image stamps FASTSHIP_BUILD_VERSION at build time; a source
    # checkout reports the installed distribution's version.
    baked = os.environ.get("FASTSHIP_BUILD_VERSION")
    if baked:
        return baked
    from importlib import metadata  # about 50 ms to import: only when needed

    try:
        return metadata.version("fastship")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0.0.0+unknown"


__version__ = _version()
