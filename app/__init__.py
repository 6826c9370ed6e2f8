"""fastship: a FastAPI service built to run on Kubernetes."""

import os
from importlib import metadata


def _version() -> str:
    # The container image stamps FASTSHIP_VERSION at build time; a source checkout
    # reports the installed distribution's version.
    baked = os.environ.get("FASTSHIP_BUILD_VERSION")
    if baked:
        return baked
    try:
        return metadata.version("fastship")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0.0.0+unknown"


__version__ = _version()
