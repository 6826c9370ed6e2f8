"""Fixtures of the dev-loop tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.kube import tools_bin


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The helm that `make tools` builds; fails (does not skip) when it is missing."""
    helm = tools_bin() / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"helm not found at {helm}: run `make tools`", pytrace=False)
    return helm
