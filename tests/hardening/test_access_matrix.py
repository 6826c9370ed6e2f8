"""Who may call what: every route of the app times every kind of caller, with the status
each one must get.

The rows come from the app's own route table: a route added without a row here
fails ``test_every_route_has_a_row``. Callers:

- ``anonymous``: no token;
- ``owner``: a user who owns the item (and, for user routes, is the target user);
- ``other``: another user, who must neither see nor change the owner's things;
- ``admin``;
- ``disabled``: a user whose token was issued before an admin disabled the account.

Each cell gets a fresh target (item, user to promote or delete), and a row whose
cells revoke the callers' own tokens gets fresh accounts, so that no cell changes the
answer of another.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import PASSWORD, Api, make_settings
from tests.support.postgres import PostgresServer

CALLERS = ("anonymous", "owner", "other", "admin", "disabled")


@dataclass
class World:
    """The accounts of one row: a bearer header and an account per caller."""

    api: Api
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, api: Api) -> World:
        world = cls(api)
        world.headers["anonymous"] = {}
        for name in ("owner", "other", "admin", "disabled"):
            account, headers = api.user(admin=name == "admin")
            world.accounts[name] = account
            world.headers[name] = headers
        disabled = api.client.patch(
            f"/api/v1/users/{world.accounts['disabled']['id']}",
            json={"is_active": False},
            headers=world.headers["admin"],
        )
        assert disabled.status_code == 200, disabled.text
        return world

    def item(self) -> dict[str, Any]:
        return self.api.item(self.headers["owner"], name="owner's thing")

    def victim(self) -> dict[str, Any]:
        return self.api.signup()


@dataclass(frozen=True)
class Call:
    path: str
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None


# A row: (method, route template, label) -> (how to build the call, expected statuses,
# and an optional check of the response body per caller).
Build = Callable[[World, str], Call]
Check = Callable[[World, str, Any], None]


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    build: Build
    expect: dict[str, int]
    check: Check | None = None
    label: str = ""
    # Rows whose cells revoke the callers' own tokens get accounts of their own.
    fresh_accounts: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}{' ' + self.label if self.label else ''}"


def _all(status: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, status)


AUTHENTICATED = {"anonymous": 401, "owner": 200, "other": 200, "admin": 200, "disabled": 401}
ADMIN_ONLY = {"anonymous": 401, "owner": 403, "other": 403, "admin": 200, "disabled": 401}
OWNER_OR_ADMIN = {"anonymous": 401, "owner": 200, "other": 404, "admin": 200, "disabled": 401}


def _static(path: str) -> Build:
    return lambda world, caller: Call(path)


def _login(world: World, caller: str) -> Call:
    # Each caller logs in with its own credentials; anonymous with an unknown email.
    email = world.accounts[caller]["email"] if caller in world.accounts else "nobody@example.com"
    return Call("/api/v1/auth/token", data={"username": email, "password": PASSWORD})


def _item_path(world: World, caller: str) -> Call:
    return Call(f"/api/v1/items/{world.item()['id']}")


def _no_foreign_items(world: World, caller: str, response: Any) -> None:
    if response.status_code >= 400:
        return
    owners = {item["owner_id"] for item in response.json()["items"]}
    if caller == "admin":
        assert world.accounts["owner"]["id"] in owners
    else:
        assert owners <= {world.accounts[caller]["id"]}, f"{caller} sees others' items"


def _list_items(world: World, caller: str) -> Call:
    world.item()
    return Call("/api/v1/items")


def _item_unchanged_unless_allowed(world: World, caller: str, response: Any) -> None:
    if response.status_code >= 400:
        return
    assert response.json()["name"] == "renamed"


ROWS = [
    Row("GET", "/healthz", _static("/healthz"), _all(200)),
    Row("GET", "/readyz", _static("/readyz"), _all(200)),
    Row("GET", "/metrics", _static("/metrics"), _all(200)),
    Row("GET", "/openapi.json", _static("/openapi.json"), _all(200)),
    Row("GET", "/docs", _static("/docs"), _all(200)),
    Row("GET", "/docs/oauth2-redirect", _static("/docs/oauth2-redirect"), _all(200)),
    Row("GET", "/redoc", _static("/redoc"), _all(200)),
    # The web interface's page and files: public, like any web page (its data comes
    # from the API, under the rows below). 200 also before `make web-build`.
    Row("GET", "/", _static("/"), _all(200)),
    Row("GET", "/assets/{name}", _static("/assets/no-such-file.js"), _all(404)),
    Row(
        "POST",
        "/api/v1/auth/token",
        _login,
        {"anonymous": 401, "owner": 200, "other": 200, "admin": 200, "disabled": 403},
    ),
    Row(
        "POST",
        "/api/v1/users/signup",
        lambda w, c: Call(
            "/api/v1/users/signup",
            json={"email": f"s{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD},
        ),
        _all(201),
    ),
    Row("GET", "/api/v1/users/me", _static("/api/v1/users/me"), AUTHENTICATED),
    Row(
        "PATCH",
        "/api/v1/users/me",
        lambda w, c: Call("/api/v1/users/me", json={"full_name": "Renamed"}),
        AUTHENTICATED,
    ),
    Row(
        "POST",
        "/api/v1/users/me/password",
        lambda w, c: Call(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another long secret"},
        ),
        {**AUTHENTICATED, "owner": 204, "other": 204, "admin": 204},
        fresh_accounts=True,
    ),
    Row("GET", "/api/v1/users", _static("/api/v1/users"), ADMIN_ONLY),
    Row(
        "GET",
        "/api/v1/users/{user_id}",
        lambda w, c: Call(f"/api/v1/users/{w.accounts['owner']['id']}"),
        ADMIN_ONLY,
    ),
    Row(
        "PATCH",
        "/api/v1/users/{user_id}",
        lambda w, c: Call(f"/api/v1/users/{w.victim()['id']}", json={"role": "admin"}),
        ADMIN_ONLY,
        label="promote",
    ),
    Row(
        "DELETE",
        "/api/v1/users/{user_id}",
        lambda w, c: Call(f"/api/v1/users/{w.victim()['id']}"),
        {**ADMIN_ONLY, "admin": 204},
    ),
    Row(
        "POST",
        "/api/v1/items",
        lambda w, c: Call("/api/v1/items", json={"name": "mine", "price": "2.00"}),
        {**AUTHENTICATED, "owner": 201, "other": 201, "admin": 201},
    ),
    Row("GET", "/api/v1/items", _list_items, AUTHENTICATED, check=_no_foreign_items),
    Row(
        "GET",
        "/api/v1/items",
        lambda w, c: Call("/api/v1/items", params={"owner_id": w.accounts["owner"]["id"]}),
        ADMIN_ONLY,
        label="owner_id filter",
    ),
    Row("GET", "/api/v1/items/{item_id}", _item_path, OWNER_OR_ADMIN),
    Row(
        "PATCH",
        "/api/v1/items/{item_id}",
        lambda w, c: Call(f"/api/v1/items/{w.item()['id']}", json={"name": "renamed"}),
        OWNER_OR_ADMIN,
        check=_item_unchanged_unless_allowed,
    ),
    Row(
        "DELETE",
        "/api/v1/items/{item_id}",
        _item_path,
        {**OWNER_OR_ADMIN, "owner": 204, "admin": 204},
    ),
]


def route_table() -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; HEAD rides on GET."""
    from fastapi.routing import iter_route_contexts

    app = create_app(make_settings())
    found: set[tuple[str, str]] = set()
    for ctx in iter_route_contexts(app.routes):
        for method in getattr(ctx.original_route, "methods", None) or ():
            if method != "HEAD":
                found.add((str(method), str(ctx.path_format)))
    return found


def test_every_route_has_a_row() -> None:
    table = route_table()
    covered = {(row.method, row.route) for row in ROWS}
    assert table - covered == set(), "routes without an access-control row"
    assert covered - table == set(), "rows for routes that no longer exist"


@pytest.fixture(scope="module")
def shared_api(pg_server: PostgresServer, _pg_template: str) -> Iterator[Api]:
    url = pg_server.url(pg_server.create_database(template=_pg_template))
    with TestClient(create_app(make_settings(database_url=url))) as client:
        yield Api(client, url)


@pytest.fixture(scope="module")
def shared_world(shared_api: Api) -> World:
    return World.build(shared_api)


CELLS = [(row, caller) for row in ROWS for caller in CALLERS]


def matrix_cells() -> int:
    return len(CELLS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_access_matrix(shared_world: World, row: Row) -> None:
    world = World.build(shared_world.api) if row.fresh_accounts else shared_world
    problems = []
    for caller in CALLERS:
        call = row.build(world, caller)
        response = world.api.client.request(
            row.method,
            call.path,
            json=call.json,
            data=call.data,
            params=call.params,
            headers=world.headers[caller],
        )
        if response.status_code != row.expect[caller]:
            problems.append(
                f"{caller}: expected {row.expect[caller]}, got {response.status_code} "
                f"{response.text[:200]}"
            )
            continue
        if response.status_code >= 400:
            assert set(response.json()) == {"code", "message", "details", "request_id"}
        if row.check is not None:
            row.check(world, caller, response)
    assert not problems, f"{row.id}:\n" + "\n".join(problems)


def test_a_foreign_item_is_unchanged_after_every_attempt(shared_world: World) -> None:
    world = shared_world
    """The other user's PATCH and DELETE on the owner's item leave it exactly as it was."""
    item = world.item()
    path = f"/api/v1/items/{item['id']}"
    for caller in ("anonymous", "other", "disabled"):
        headers = world.headers[caller]
        world.api.client.patch(path, json={"name": "stolen", "price": "0"}, headers=headers)
        world.api.client.delete(path, headers=headers)
    after = world.api.client.get(path, headers=world.headers["owner"])
    assert after.status_code == 200
    assert after.json() == item
