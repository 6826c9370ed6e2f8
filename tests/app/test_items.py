from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.app.conftest import Api, LogLines
from tests.support.waiting import wait_until


def test_item_crud(api: Api) -> None:
    _, headers = api.user()
    created = api.item(headers, name="  Cup ", description="blue", price=12.5, tags=["a", "b"])
    assert created["name"] == "Cup"
    assert created["price"] == "12.50"
    assert created["tags"] == ["a", "b"]
    item_id = created["id"]
    got = api.client.get(f"/api/v1/items/{item_id}", headers=headers)
    assert got.json() == created
    patched = api.client.patch(
        f"/api/v1/items/{item_id}", json={"price": "3", "tags": []}, headers=headers
    )
    assert patched.status_code == 200
    assert patched.json()["price"] == "3.00"
    assert patched.json()["name"] == "Cup"
    # The cached copy was invalidated by the write.
    assert api.client.get(f"/api/v1/items/{item_id}", headers=headers).json()["price"] == "3.00"
    assert api.client.delete(f"/api/v1/items/{item_id}", headers=headers).status_code == 204
    gone = api.client.get(f"/api/v1/items/{item_id}", headers=headers)
    assert gone.status_code == 404
    assert gone.json()["message"] == "Item not found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "price": "1"}, "body.name"),
        ({"name": "x" * 201, "price": "1"}, "body.name"),
        ({"name": "x", "price": "-1"}, "body.price"),
        ({"name": "x", "price": "1.001"}, "body.price"),
        ({"name": "x", "price": "abc"}, "body.price"),
        ({"name": "x"}, "body.price"),
        ({"name": "x", "price": "1", "tags": ["t" * 33]}, "body.tags.0"),
        ({"name": "x", "price": "1", "tags": [str(i) for i in range(21)]}, "body.tags"),
        ({"name": "a\x00b", "price": "1"}, "body.name"),
        ({"name": "x", "price": "1", "owner_id": str(uuid.uuid4())}, "body.owner_id"),
    ],
)
def test_item_validation(api: Api, body: dict[str, object], field: str) -> None:
    _, headers = api.user()
    response = api.client.post("/api/v1/items", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert field in {d["field"] for d in response.json()["details"]}


def test_patch_cannot_null_required_fields(api: Api) -> None:
    _, headers = api.user()
    item = api.item(headers)
    response = api.client.patch(f"/api/v1/items/{item['id']}", json={"name": None}, headers=headers)
    assert response.status_code == 422


def test_users_cannot_see_or_change_each_others_items(api: Api) -> None:
    _, alice = api.user()
    _, bob = api.user()
    item = api.item(alice)
    for method in ("GET", "PATCH", "DELETE"):
        response = api.client.request(
            method, f"/api/v1/items/{item['id']}", headers=bob, json={"name": "mine"}
        )
        assert response.status_code == 404, method
    assert api.client.get("/api/v1/items", headers=bob).json()["total"] == 0
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=alice).json()["name"] == "thing"


def test_admins_see_all_items_and_filter_by_owner(api: Api) -> None:
    alice_user, alice = api.user()
    _, bob = api.user()
    _, admin = api.user(admin=True)
    api.item(alice)
    api.item(bob)
    everything = api.client.get("/api/v1/items", headers=admin).json()
    assert everything["total"] == 2
    only_alice = api.client.get(f"/api/v1/items?owner_id={alice_user['id']}", headers=admin).json()
    assert only_alice["total"] == 1
    assert only_alice["items"][0]["owner_id"] == alice_user["id"]
    refused = api.client.get(f"/api/v1/items?owner_id={alice_user['id']}", headers=bob)
    assert refused.status_code == 403


def test_list_pages_filters_and_sorts(api: Api) -> None:
    _, headers = api.user()
    for i, price in enumerate(["5", "1", "3", "4", "2"]):
        api.item(
            headers, name=f"item {i}", price=price, description="100% cotton" if i == 2 else None
        )
    page = api.client.get("/api/v1/items?limit=2&offset=1&sort=price", headers=headers).json()
    assert page["total"] == 5
    assert [i["price"] for i in page["items"]] == ["2.00", "3.00"]
    desc = api.client.get("/api/v1/items?sort=-price&limit=1", headers=headers).json()
    assert desc["items"][0]["price"] == "5.00"
    found = api.client.get("/api/v1/items?q=100%25", headers=headers).json()
    assert found["total"] == 1
    literal = api.client.get("/api/v1/items?q=%25", headers=headers).json()
    assert literal["total"] == 1  # '%' is matched literally, not as a wildcard
    by_name = api.client.get("/api/v1/items?q=ITEM 4", headers=headers).json()
    assert [i["name"] for i in by_name["items"]] == ["item 4"]
    for query in ("limit=0", "limit=101", "offset=-1", "sort=owner", "q=" + "x" * 201):
        assert api.client.get(f"/api/v1/items?{query}", headers=headers).status_code == 422


def test_item_changes_are_audited_in_the_background(api: Api) -> None:
    _, headers = api.user()
    item = api.item(headers)
    api.client.patch(f"/api/v1/items/{item['id']}", json={"name": "new"}, headers=headers)
    api.client.delete(f"/api/v1/items/{item['id']}", headers=headers)

    # The rows are stored by the audit writer, after the responses: wait for them.
    def audit_rows() -> list[Any] | None:
        rows = api.sql(
            "SELECT action, request_id FROM audit_events WHERE entity_id = :i ORDER BY id",
            i=item["id"],
        )
        return rows if len(rows) == 3 else None

    rows = wait_until(audit_rows, timeout=30, interval=0.05, what="the three audit rows")
    assert [r[0] for r in rows] == ["create", "update", "delete"]
    assert all(r[1] for r in rows)


def test_a_failing_background_task_never_fails_the_request(api: Api, logs: LogLines) -> None:
    _, headers = api.user()
    api.sql("DROP TABLE audit_events")  # the audit write now fails for real
    response = api.client.post(
        "/api/v1/items",
        json={"name": "x", "price": "1"},
        headers={**headers, "X-Request-ID": "bg-failure-1"},
    )
    assert response.status_code == 201
    failures = wait_until(
        lambda: logs.matching(msg="background task failed", task="audit"),
        timeout=30,
        interval=0.05,
        what="the audit failure's log line",
    )
    assert len(failures) == 1
    assert failures[0]["request_id"] == "bg-failure-1"
    assert "audit_events" in failures[0]["error"]["message"]
    assert api.client.get("/api/v1/items", headers=headers).json()["total"] == 1
