from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.app.conftest import PASSWORD, Api
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

KEY = "test-signing-key-" + "x" * 32


def _token(api: Api, email: str) -> str:
    return api.login(email)["Authorization"].removeprefix("Bearer ")


def _me(api: Api, token: str) -> Any:
    return api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})


def test_login_returns_a_bearer_token_that_opens_me(api: Api) -> None:
    user = api.signup(full_name="Ada")
    response = api.client.post(
        "/api/v1/auth/token", data={"username": user["email"].upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    claims = jwt.decode(body["access_token"], KEY, algorithms=["HS256"], audience="fastship-api")
    assert claims["iss"] == "fastship"
    assert claims["sub"] == user["id"]
    me = _me(api, body["access_token"])
    assert me.status_code == 200
    assert me.json()["full_name"] == "Ada"


def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    user = api.signup()
    wrong = api.client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": "not it at all"}
    )
    unknown = api.client.post(
        "/api/v1/auth/token", data={"username": "nobody@example.com", "password": "not it at all"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"] == "Incorrect email or password"
    assert wrong.json()["code"] == unknown.json()["code"]
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_login_form_requires_fields(api: Api) -> None:
    response = api.client.post("/api/v1/auth/token", data={"username": "a@example.com"})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["details"]] == ["body.password"]


@pytest.mark.parametrize("exists", [True, False])
def test_repeated_failures_lock_the_email(api_factory: Any, exists: bool) -> None:
    api = api_factory(login_max_failures=3, login_lockout_seconds=2)
    email = api.signup()["email"] if exists else "ghost@example.com"
    for _ in range(3):
        bad = api.client.post(
            "/api/v1/auth/token", data={"username": email, "password": "wrong!!!"}
        )
        assert bad.status_code == 401
    locked = api.client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["code"] == "login_locked"
    assert 1 <= int(locked.headers["retry-after"]) <= 2
    wait_until(
        lambda: api.sql(
            "SELECT 1 FROM login_throttle WHERE email = :e AND locked_until <= now()", e=email
        ),
        timeout=10,
        interval=0.1,
        what="the lockout to end",
    )
    after = api.client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert after.status_code == (200 if exists else 401)


def test_success_resets_the_failure_count(api_factory: Any) -> None:
    api = api_factory(login_max_failures=3)
    email = api.signup()["email"]
    for _ in range(2):
        api.client.post("/api/v1/auth/token", data={"username": email, "password": "wrong!!!"})
    api.login(email)
    for _ in range(2):
        bad = api.client.post(
            "/api/v1/auth/token", data={"username": email, "password": "wrong!!!"}
        )
        assert bad.status_code == 401


def test_simultaneous_logins_with_the_right_password_all_succeed(api_factory: Any) -> None:
    """Each attempt is counted before its password check and taken back when it
    succeeds: more simultaneous right logins than the failure limit must not lock
    the account out."""
    from concurrent.futures import ThreadPoolExecutor

    api = api_factory(login_max_failures=3)
    email = api.signup()["email"]

    def login(_: int) -> int:
        answer = api.client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        return int(answer.status_code)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(login, range(8))) == [200] * 8
    assert api.sql("SELECT count(*) FROM login_throttle WHERE email = :e", e=email)[0][0] == 0


def test_disabled_account_cannot_log_in(api: Api) -> None:
    user = api.signup()
    api.sql("UPDATE users SET is_active = false WHERE id = :i", i=user["id"])
    response = api.client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": PASSWORD}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "account_disabled"


def _forge(payload: dict[str, Any], *, key: str = KEY, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def _claims(api: Api, email: str) -> dict[str, Any]:
    token = _token(api, email)
    return dict(jwt.decode(token, KEY, algorithms=["HS256"], audience="fastship-api"))


def test_forged_tokens_are_rejected(api: Api) -> None:
    user = api.signup()
    good = _claims(api, user["email"])
    now = datetime.now(UTC)
    forged = {
        "expired": _forge(
            {**good, "exp": now - timedelta(minutes=1), "iat": now - timedelta(hours=1)}
        ),
        "not yet valid": _forge({**good, "nbf": now + timedelta(minutes=5)}),
        "other key": _forge(good, key="another-key-" + "y" * 40),
        "wrong audience": _forge({**good, "aud": "someone-else"}),
        "wrong issuer": _forge({**good, "iss": "evil"}),
        "HS512 instead of HS256": _forge(good, key=KEY * 2, alg="HS512"),
        "missing version": _forge({k: v for k, v in good.items() if k != "ver"}),
        "unknown user": _forge({**good, "sub": "00000000-0000-0000-0000-000000000000"}),
        "garbage": "not.a.token",
    }
    header, payload, signature = _token(api, user["email"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged["tampered payload"] = f"{header}.{tampered}.{signature}"
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    forged["alg none"] = f"{none_header}.{payload}."
    for name, token in forged.items():
        response = _me(api, token)
        assert response.status_code == 401, name
        assert response.json()["code"] == "unauthorized", name


def test_algorithm_confusion_with_a_public_key_is_rejected(api: Api, tmp_path: Path) -> None:
    # The classic confusion attack signs with HMAC using a public key as the secret;
    # the service accepts exactly its one configured algorithm and key. The RSA key
    # and its signature come from the openssl command line.
    user = api.signup()
    good = _claims(api, user["email"])
    private = tmp_path / "private.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        stdout=private.open("wb"),
        check=True,
    )
    public_pem = subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout"], capture_output=True, check=True
    ).stdout
    payload = _b64(json.dumps(good).encode())

    rs256_header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    signed = f"{rs256_header}.{payload}".encode()
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(private)],
        input=signed,
        capture_output=True,
        check=True,
    ).stdout
    rs256 = f"{rs256_header}.{payload}.{_b64(signature)}"
    # A well-formed RS256 token: its signature verifies with the public key.
    assert jwt.get_unverified_header(rs256)["alg"] == "RS256"
    public, sig = tmp_path / "public.pem", tmp_path / "signature"
    public.write_bytes(public_pem)
    sig.write_bytes(signature)
    verified = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(public), "-signature", str(sig)],
        input=signed,
        capture_output=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert _me(api, rs256).status_code == 401

    hs256_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    mac = hmac.new(public_pem, f"{hs256_header}.{payload}".encode(), hashlib.sha256).digest()
    assert _me(api, f"{hs256_header}.{payload}.{_b64(mac)}").status_code == 401


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_password_change_revokes_earlier_tokens(api: Api) -> None:
    user = api.signup()
    old = _token(api, user["email"])
    changed = api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers={"Authorization": f"Bearer {old}"},
    )
    assert changed.status_code == 204
    assert _me(api, old).status_code == 401
    fresh = api.login(user["email"], "a brand new secret")
    assert api.client.get("/api/v1/users/me", headers=fresh).status_code == 200
    refused = api.client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": PASSWORD}
    )
    assert refused.status_code == 401


def test_disabling_an_account_revokes_its_tokens(api: Api) -> None:
    _, admin = api.user(admin=True)
    user = api.signup()
    token = _token(api, user["email"])
    assert _me(api, token).status_code == 200  # also warms the principal cache
    disabled = api.client.patch(
        f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin
    )
    assert disabled.status_code == 200
    assert disabled.json()["is_active"] is False
    assert _me(api, token).status_code == 401


def test_missing_and_malformed_authorization(api: Api) -> None:
    assert api.client.get("/api/v1/items").status_code == 401
    bad = api.client.get("/api/v1/items", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert bad.status_code == 401
    assert bad.json()["request_id"] == bad.headers["x-request-id"]


def test_hashing_threads_run_at_the_configured_niceness() -> None:
    import asyncio
    import os
    import threading

    from app.core.config import Settings
    from app.core.security import PasswordHashing

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def scenario() -> tuple[int, int]:
        hashing = PasswordHashing(Settings(password_hash_niceness=19))
        try:
            assert await hashing.verify(await hashing.hash("a password"), "a password")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(hashing._threads, niceness), niceness()
        finally:
            hashing.close()

    before = niceness()
    # The hashing threads at 19; the event loop's thread (this one) as it was.
    assert asyncio.run(scenario()) == (19, before)


def _image_env(name: str) -> str:
    """The value the Dockerfile's ENV gives ``name``."""
    match = re.search(rf"^\s*(?:ENV\s+)?{name}=(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, f"the Dockerfile sets no {name}"
    return match.group(1).rstrip("\\").strip()


def test_hashing_threads_do_not_keep_argon2_memory(tmp_path: Path) -> None:
    """Each argon2id hash allocates its whole memory cost (19 MiB here). Hashes run in
    worker threads; once they are done, a process with the image's allocator setting
    must not keep that memory. Without the setting glibc keeps one block per thread
    (so the setting is what this checks)."""
    script = tmp_path / "hashes.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, pathlib
            from app.core.config import Settings
            from app.core.security import PasswordHashing

            def rss_kib():
                for line in pathlib.Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])

            async def main():
                hashing = PasswordHashing(Settings(password_hash_concurrency=4))
                before = rss_kib()
                await asyncio.gather(*(hashing.hash("x") for _ in range(16)))
                print(before, rss_kib())

            asyncio.run(main())
            """
        )
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FASTSHIP_", "MALLOC_"))}
    image = {"MALLOC_MMAP_THRESHOLD_": _image_env("MALLOC_MMAP_THRESHOLD_")}
    growth = {}
    for name, env in (("image", {**clean, **image}), ("glibc default", clean)):
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        ).stdout
        before, after = map(int, out.split())
        growth[name] = after - before
    # Kept, it would be one block per hashing thread: 4 x 19 MiB.
    assert growth["image"] < 19 * 1024, growth
    assert growth["glibc default"] > 2 * 19 * 1024, growth
