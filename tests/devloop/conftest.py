"""Fixtures of the dev-loop tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.kube import tools_bin

# Numbers shown at the end of the run (dev image build, sync-to-served time).
NUMBERS: dict[str, str] = {}


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The helm that `make tools` builds; fails (does not skip) when it is missing."""
    helm = tools_bin() / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"helm not found at {helm}: run `make tools`", pytrace=False)
    return helm


# The image tests' fixtures (podman, the local base image, the session build of the root
# Dockerfile): test_dev_image.py builds the dev image on top of that build.
from tests.image.conftest import (  # noqa: E402
    base_image,
    build_secret,
    engine,
    image,
    jwt_key,
)
from tests.web.conftest import web_dist  # noqa: E402 - the Dockerfile copies web/dist

__all__ = ["base_image", "build_secret", "engine", "helm_bin", "image", "jwt_key", "web_dist"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NUMBERS:
        terminalreporter.section("dev loop")
        for key, value in NUMBERS.items():
            terminalreporter.write_line(f"{key}: {value}")
