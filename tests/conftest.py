"""Fixtures shared by every part's tests live in tests/support/ as pytest plugins."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.redis",
    "tests.support.kube",
    "tests.support.server",
]
