"""``python -m app``: serve, migrate, wait-for-schema, create-admin, settings-schema.

Exit codes: 0 done, 1 the operation failed, 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from app import __version__
from app.core.config import Environment, Settings, SettingsError, format_validation_error


def _settings(*, serving: bool = False) -> Settings:
    try:
        settings = Settings()
        if serving:
            settings.check_can_serve()
    except ValidationError as exc:
        print(format_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsError as exc:
        print(f"invalid settings:\n  {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core.logging import configure_logging

    settings = _settings(serving=True)
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging(settings.log_level)
    if settings.environment is Environment.development:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        print(
            f"fastship {__version__}: the web interface on http://{shown}:{port}/  "
            f"(interactive API docs: http://{shown}:{port}/docs)",
            file=sys.stderr,
            flush=True,
        )
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        # asyncio's own loop: uvloop gave no clear gain (bench/README.md, "Side by side:
        # the event loop").
        "loop": "asyncio",
        "http": "auto",  # httptools when installed
        "ws": "none",  # no WebSocket routes: nothing to import for them
        "lifespan": "on",
        "log_config": None,
        "access_log": False,  # the service writes its own JSON access log
        "server_header": False,
        "proxy_headers": True,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_seconds),
    }
    if args.reload:
        uvicorn.run(
            "app.main:create_app",
            reload=True,
            reload_dirs=[str(Path(__file__).parent)],
            **options,
        )
        return 0
    if settings.metrics_port:
        if settings.metrics_port == port:
            print(
                f"invalid settings:\n  FASTSHIP_METRICS_PORT: is {port}, the port of the API; "
                "choose another port, or 0 to serve /metrics on the API port",
                file=sys.stderr,
            )
            return 2
        from app.core import metrics

        metrics.serve_separately(host, settings.metrics_port)
    # Importing the application allocates some 100,000 long-lived objects and hardly
    # any garbage: without collector passes meanwhile, start-up is quicker. The
    # application's start-up turns the collector back on.
    gc.disable()
    server = uvicorn.Server(uvicorn.Config("app.main:create_app", **options))
    # While it serves, uvicorn handles SIGTERM and SIGINT by draining; once drained it
    # puts back the handlers it found and raises the signal again. These handlers take
    # it, so that a drained shutdown ends with exit 0 rather than "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _drained)
    server.run()
    return 0 if server.started else 1


def _drained(signum: int, frame: FrameType | None) -> None:
    """The signal that stopped the server, raised again once it has drained."""


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.core import schema

    settings = _settings()
    try:
        status = schema.migrate(
            settings,
            lock_timeout=args.lock_timeout,
            deadline=args.deadline or None,  # 0 from the environment: no limit
            report=lambda message: print(f"migrate: {message}", file=sys.stderr, flush=True),
        )
    except schema.MigrationError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        _termination_message(args.termination_log, f"failed: {exc}")
        return 1
    except Exception as exc:
        print(f"migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        _termination_message(args.termination_log, f"failed: {_failure_summary(exc)}")
        return 1
    revision = status.database_revision or ""
    print(f"database at revision {revision} ({status.state.value})", flush=True)
    if status.state is schema.SchemaState.newer:
        print(f"nothing to do: {status.describe()}", file=sys.stderr, flush=True)
    # Kubernetes reads this file into the pod's status, where the operator finds it.
    _termination_message(args.termination_log, revision)
    return 0


def _failure_summary(exc: BaseException) -> str:
    """The root cause of a failed migration in one line, for the pod's termination message
    (what `kubectl get migration` shows): the database's own message, e.g. ``UndefinedFunction:
    function f() does not exist``, without the statement or its bound parameters, which
    SQLAlchemy adds on the lines after it."""
    root = exc
    while True:
        inner = getattr(root, "orig", None) or root.__cause__ or root.__context__
        if not isinstance(inner, BaseException) or inner is root:
            break
        root = inner
    lines = str(root).strip().splitlines()
    detail = lines[0][:400] if lines else ""
    return f"{type(root).__name__}: {detail}" if detail else type(root).__name__


def _termination_message(path: str, text: str) -> None:
    target = Path(path)
    if target.parent.is_dir() and (target.exists() or path != "/dev/termination-log"):
        with contextlib.suppress(OSError):
            target.write_text(text)


def cmd_wait_for_schema(args: argparse.Namespace) -> int:
    from app.core import schema

    settings = _settings()
    try:
        status = schema.wait_for_schema(settings, timeout=args.timeout, interval=args.interval)
    except TimeoutError as exc:
        print(f"gave up after {args.timeout:g}s: {exc}", file=sys.stderr)
        return 1
    print(status.describe(), flush=True)
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from app.core.db import Database
    from app.core.errors import AppError
    from app.core.security import PasswordHashing
    from app.models import Role
    from app.services import users

    settings = _settings()
    email = args.email or os.environ.get("FASTSHIP_ADMIN_EMAIL")
    password = os.environ.get("FASTSHIP_ADMIN_PASSWORD")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    interactive = sys.stdin.isatty()
    if not email and interactive:
        email = input("Admin email: ").strip()
    if not password and interactive:
        password = getpass.getpass("Password (8 to 128 characters): ")
        if getpass.getpass("Repeat password: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 2
    if not email or not password:
        print(
            "create-admin needs an email and a password: pass --email and --password-stdin, "
            "set FASTSHIP_ADMIN_EMAIL and FASTSHIP_ADMIN_PASSWORD, or run it in a terminal",
            file=sys.stderr,
        )
        return 2
    from app.schemas import UserCreate

    try:
        UserCreate(email=email, password=password, full_name=args.full_name)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        print(f"invalid admin: {problems}", file=sys.stderr)
        return 2

    async def create() -> int:
        db = Database(settings)
        try:
            async with db.session() as session:
                user = await users.create(
                    session=session,
                    hashing=PasswordHashing(settings),
                    email=email,
                    password=password,
                    full_name=args.full_name,
                    role=Role.admin,
                )
                print(f"created admin {user.email} ({user.id})")
                return 0
        except AppError as exc:
            print(f"cannot create admin: {exc.detail}", file=sys.stderr)
            return 1
        finally:
            await db.dispose()

    return asyncio.run(create())


def cmd_settings_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from app.core.config import settings_reference

        print(settings_reference())
    else:
        print(json.dumps(Settings.model_json_schema(), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="fastship service. Settings come from FASTSHIP_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"fastship {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API server (the default)")
    serve.add_argument("--host", help="bind address (default: FASTSHIP_HOST)")
    serve.add_argument("--port", type=int, help="port (default: FASTSHIP_PORT)")
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to this code's head")
    migrate.add_argument(
        "--termination-log",
        default="/dev/termination-log",
        help="file that receives the applied revision (Kubernetes termination message)",
    )
    migrate.add_argument(
        "--lock-timeout",
        type=_non_negative,
        default=_env_seconds(LOCK_TIMEOUT_ENV, 5.0),
        help="seconds one statement may wait for a table or row lock before the migration "
        f"is rolled back and retried; 0 waits forever (default 5, or ${LOCK_TIMEOUT_ENV})",
    )
    migrate.add_argument(
        "--deadline",
        type=_positive,
        default=_env_seconds(DEADLINE_ENV, None),
        help="seconds for the whole run: waiting for another migration's lock and the "
        f"retries (default: no limit, or ${DEADLINE_ENV}; the operator sets it from the "
        "Job's activeDeadlineSeconds)",
    )
    migrate.set_defaults(func=cmd_migrate)

    wait = sub.add_parser("wait-for-schema", help="block until the schema serves this code")
    wait.add_argument("--timeout", type=_positive, default=600.0, help="seconds (default 600)")
    wait.add_argument("--interval", type=_positive, default=2.0, help="seconds between checks")
    wait.set_defaults(func=cmd_wait_for_schema)

    admin = sub.add_parser("create-admin", help="create a user with the admin role")
    admin.add_argument("--email", help="or FASTSHIP_ADMIN_EMAIL")
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (or set FASTSHIP_ADMIN_PASSWORD)",
    )
    admin.add_argument("--full-name")
    admin.set_defaults(func=cmd_create_admin)

    schema = sub.add_parser("settings-schema", help="print the JSON schema of the settings")
    schema.add_argument(
        "--markdown", action="store_true", help="print the reference table of the README instead"
    )
    schema.set_defaults(func=cmd_settings_schema)
    return parser


LOCK_TIMEOUT_ENV = "FASTSHIP_MIGRATE_LOCK_TIMEOUT_SECONDS"
DEADLINE_ENV = "FASTSHIP_MIGRATE_DEADLINE_SECONDS"


def _env_seconds(name: str, default: float | None) -> float | None:
    """A default of seconds from the environment; a bad value stops with exit 2."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        print(f"{name} must be a number of seconds (0 or more), got {text!r}", file=sys.stderr)
        raise SystemExit(2)
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["serve", *(argv or [])])
    result: int = args.func(args)
    return result
