"""The service under contention: a burst of logins must not take the database pool
from the rest of the API, and the lockout still counts every concurrent guess.

A real server with a deliberately small pool (2 connections, no overflow, 0.5 s to
wait for one): a login that held a connection while it waited for and ran argon2
would hold the whole pool during the burst, and the other requests would wait past
the pool timeout and get 503."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.hardening.server import signup_and_login, sql
from tests.support.server import AppServer
from tests.support.waiting import wait_until

TOKEN_URL = "/api/v1/auth/token"
BURST_CONNECTIONS = 30


def test_database_requests_succeed_during_a_burst_of_unknown_email_logins(
    server_factory: Callable[..., AppServer], pg_database: str
) -> None:
    server = server_factory(
        pg_database,
        FASTSHIP_DB_POOL_SIZE="2",
        FASTSHIP_DB_MAX_OVERFLOW="0",
        FASTSHIP_DB_POOL_TIMEOUT_SECONDS="0.5",
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        _, headers = signup_and_login(client, pg_database)

    stop = threading.Event()
    logins: Counter[int] = Counter()

    def burst(n: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            time.sleep(n * 0.02)  # arriving over 0.6 s, as a burst on 30 connections does
            for _ in range(200):  # bounded; stopped much earlier
                if stop.is_set():
                    return
                email = f"nobody-{uuid.uuid4().hex}@example.com"
                answer = client.post(TOKEN_URL, data={"username": email, "password": "a guess"})
                logins[answer.status_code] += 1

    answers: list[tuple[str, int]] = []
    with ThreadPoolExecutor(max_workers=BURST_CONNECTIONS) as pool:
        workers = [pool.submit(burst, n) for n in range(BURST_CONNECTIONS)]
        # Every burst connection has a login in the server (one may be between two).
        wait_until(
            lambda: server.requests_in_flight() >= BURST_CONNECTIONS - 1,
            timeout=30,
            interval=0.05,
            what="the burst's logins in flight",
        )
        try:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                for n in range(15):
                    created = client.post(
                        "/api/v1/items", json={"name": f"n{n}", "price": "1"}, headers=headers
                    )
                    answers.append(("create", created.status_code))
                    # Not cached: the account's row, read through a session.
                    me = client.get("/api/v1/users/me", headers=headers)
                    answers.append(("me", me.status_code))
        finally:
            stop.set()
            for worker in workers:
                worker.result(timeout=120)
    assert answers == [("create", 201), ("me", 200)] * 15, Counter(answers)
    # A login itself may wait for one of the two connections past the 0.5 s when the
    # machine is busy (30 of them arrive at once); with the default pool it does not.
    assert set(logins) <= {401, 503}, logins
    assert logins[401] >= BURST_CONNECTIONS, logins


def test_login_counters_of_unknown_emails_are_swept_once_their_window_passes(
    server_factory: Callable[..., AppServer], pg_database: str
) -> None:
    server = server_factory(pg_database, FASTSHIP_LOGIN_FAILURE_WINDOW_SECONDS="1")
    emails = [f"gone-{uuid.uuid4().hex}@example.com" for _ in range(5)]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for email in emails:
            answer = client.post(TOKEN_URL, data={"username": email, "password": "a guess"})
            assert answer.status_code == 401
        counted = sql(pg_database, "SELECT count(*) FROM login_throttle WHERE email LIKE 'gone-%'")[
            0
        ][0]
        assert counted == 5
        # The server's sweep ran at its first login, when these did not exist yet; a
        # restarted server sweeps at its first login too, once their window has passed.
        wait_until(
            lambda: (
                not sql(
                    pg_database,
                    "SELECT 1 FROM login_throttle WHERE email LIKE 'gone-%'"
                    " AND window_started_at >= now() - interval '1 second'",
                )
            ),
            timeout=10,
            interval=0.05,
            what="the counters' failure window to pass",
        )
        assert server.terminate() == 0
        server.start()
        client.post(TOKEN_URL, data={"username": "someone@example.com", "password": "x y z"})
        server.wait_for_record(msg="login counters swept")
        left = sql(pg_database, "SELECT count(*) FROM login_throttle WHERE email LIKE 'gone-%'")
        assert left[0][0] == 0
