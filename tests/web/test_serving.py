"""How the service serves the web interface (app/web.py): the page with its content
security policy, the hashed files, and a clear page when the interface is not built."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import web
from app.main import create_app
from tests.app.conftest import make_settings


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="./assets/index-abc123.js"></script>'
    )
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log('fastship')")
    (tmp_path.parent / "secret.txt").write_text("not for the web")
    return tmp_path


def client_for(dist: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    # Without `with`: no lifespan, no database; these routes need neither.
    monkeypatch.setattr(web, "WEB_DIST", dist)
    return TestClient(create_app(make_settings(sqlite_path=dist.parent / "unused.db")))


def test_the_page_carries_the_interface_policy(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    response = client_for(dist, monkeypatch).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "index-abc123.js" in response.text
    # Exactly one policy: the interface's, not the API's as well (two would both apply).
    policies = response.headers.get_list("content-security-policy")
    assert policies == [web.CONTENT_SECURITY_POLICY]
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    head = client_for(dist, monkeypatch).head("/")
    assert head.status_code == 200
    assert head.headers.get_list("content-security-policy") == [web.CONTENT_SECURITY_POLICY]


def test_the_policy_allows_only_this_origin() -> None:
    directives = dict(part.split(" ", 1) for part in web.CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe" not in web.CONTENT_SECURITY_POLICY
    assert not re.search(r"https?:|\*", web.CONTENT_SECURITY_POLICY)


def test_api_responses_keep_the_api_policy(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(dist, monkeypatch)
    for path in ("/api/v1/items", "/healthz", "/assets/missing.js"):
        policies = client.get(path).headers.get_list("content-security-policy")
        assert policies == ["default-src 'none'; frame-ancestors 'none'"], path


def test_assets_are_cached_for_good(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    response = client_for(dist, monkeypatch).get("/assets/index-abc123.js")
    assert response.status_code == 200
    assert response.text == "console.log('fastship')"
    assert "javascript" in response.headers["content-type"]
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    "path",
    [
        "/assets/nope.js",
        "/assets/..%2Fsecret.txt",
        "/assets/%2E%2E%2F..%2Fsecret.txt",
        "/assets/.x",
    ],
)
def test_nothing_else_is_served(dist: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    response = client_for(dist, monkeypatch).get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_routes_are_not_part_of_the_api(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = client_for(dist, monkeypatch).get("/openapi.json").json()
    assert "/" not in spec["paths"]
    assert not any(path.startswith("/assets") for path in spec["paths"])


def test_without_a_build_the_page_says_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = client_for(tmp_path / "missing", monkeypatch).get("/")
    assert response.status_code == 200
    assert "make web-build" in response.text
    assert response.headers.get_list("content-security-policy") == [web.CONTENT_SECURITY_POLICY]


class _Inline(HTMLParser):
    """Collects what a strict policy would block in a page: inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")
            if "src" not in names:
                self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        if "style" in names or any(name.startswith("on") for name in names):
            self.found.append(f"inline attribute on <{tag}>")


def test_the_built_page_needs_nothing_inline(web_dist: Path) -> None:
    parser = _Inline()
    parser.feed((web_dist / "index.html").read_text())
    assert parser.found == []
    assert parser.scripts
    assert all(src.startswith("./assets/") for src in parser.scripts)
    for src in parser.scripts:
        assert (web_dist / src).is_file()
