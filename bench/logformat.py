"""`python -m bench.logformat`: the cost of one JSON log line, for the service's own
formatter and for libraries configured to write the same lines, side by side.

Variants (interleaved, round by round):

- ``app``: ``app.core.logging.JsonFormatter``.
- ``python-json-logger``: its ``JsonFormatter`` (already in the image: kopf depends on
  it), with the fields renamed and the error object built in ``add_fields``.
- ``structlog``: its ``ProcessorFormatter`` for standard-library records, with the
  processors that give the same fields; included when structlog is importable.

Three kinds of record: the access-log line (request id and five extra fields), a plain
message with a request id, and an error with its exception. Each variant's lines are
parsed and compared with the ``app`` variant's (all but the timestamp's value), so a
variant is timed only when it writes the same contract. Options: --rounds, --records.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from app.core.logging import JsonFormatter, request_id_var

RENAMED = {"created": "ts", "levelname": "level", "name": "logger", "message": "msg"}


class PythonJsonLoggerFormatter(LibraryJsonFormatter):
    """python-json-logger writing the service's fields."""

    def __init__(self) -> None:
        super().__init__(
            "{created}{levelname}{name}{message}",
            style="{",
            rename_fields=RENAMED,
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            json_default=str,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        stack = message_dict.pop("exc_info", None)
        super().add_fields(log_data, record, message_dict)
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        request_id = request_id_var.get()
        if request_id is not None:
            log_data["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            log_data["error"] = {
                "type": record.exc_info[0].__name__,
                "message": str(record.exc_info[1]),
                "stack": stack + "\n",
            }


def structlog_formatter() -> logging.Formatter | None:
    """structlog writing the service's fields, or None when it is not installed."""
    try:
        structlog: Any = importlib.import_module("structlog")
    except ImportError:
        return None

    def fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        record: logging.LogRecord = event.pop("_record")
        event.pop("_from_structlog", None)
        exc_info = event.pop("exc_info", None)  # taken off the record by ProcessorFormatter
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": event.pop("event"),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(event)
        if exc_info and exc_info[0] is not None:
            entry["error"] = {
                "type": exc_info[0].__name__,
                "message": str(exc_info[1]),
                "stack": structlog.processors.format_exc_info(None, "", {"exc_info": exc_info})[
                    "exception"
                ]
                + "\n",
            }
        return entry

    extras = structlog.stdlib.ExtraAdder()

    def extra_fields(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        event = extras(logger, name, event)
        event.pop("color_message", None)
        return event

    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[extra_fields],
        processors=[fields, structlog.processors.JSONRenderer(default=str, ensure_ascii=False)],
        pass_foreign_args=False,
    )
    return formatter


def records() -> dict[str, Callable[[], logging.LogRecord]]:
    """Factories of the three kinds of record (a fresh record each time, as logging
    makes one per call)."""

    def access() -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "app.access",
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": "request",
                "method": "GET",
                "path": "/api/v1/items/{item_id}",
                "status": 200,
                "duration_ms": 1.23,
                "client": "127.0.0.1",
            }
        )

    def plain() -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "fastship",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": "cache %s unreachable: %s",
                "args": ("redis", "timed out"),
            }
        )

    try:
        raise ValueError("item price out of range")
    except ValueError as exc:
        exc_info = (type(exc), exc, exc.__traceback__)

    def error() -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "app.errors",
                "levelno": logging.ERROR,
                "levelname": "ERROR",
                "msg": "unhandled error",
                "exc_info": exc_info,
            }
        )

    return {"access line": access, "plain message": plain, "error with exception": error}


def same_contract(expected: str, line: str) -> bool:
    want, got = json.loads(expected), json.loads(line)
    want.pop("ts"), got.pop("ts")
    return bool(want == got)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    formatters: dict[str, logging.Formatter] = {
        "app": JsonFormatter(),
        "python-json-logger": PythonJsonLoggerFormatter(),
    }
    if (structlog := structlog_formatter()) is not None:
        formatters["structlog"] = structlog
    else:
        print("structlog is not installed: its variant is left out")
    kinds = records()
    token = request_id_var.set("3f2a9c1e-request-id")
    try:
        for kind, make in kinds.items():
            reference = formatters["app"].format(make())
            for name, formatter in formatters.items():
                line = formatter.format(make())
                if not same_contract(reference, line):
                    print(f"{name} writes another line for {kind}:\n  {line}\n  {reference}")
                    return 1
        loads = [os.getloadavg()]
        timings: dict[tuple[str, str], list[float]] = {}
        names = list(formatters)
        for n in range(args.rounds):
            for kind, make in kinds.items():
                batch = [make() for _ in range(args.records)]
                for name in names[n % len(names) :] + names[: n % len(names)]:
                    formatter = formatters[name]
                    mine = [logging.makeLogRecord(r.__dict__) for r in batch]
                    started = time.perf_counter()
                    for record in mine:
                        formatter.format(record)
                    elapsed = time.perf_counter() - started
                    timings.setdefault((kind, name), []).append(elapsed / args.records * 1e6)
            loads.append(os.getloadavg())
    finally:
        request_id_var.reset(token)

    print(
        f"\n{args.rounds} rounds of {args.records:,} records per kind; µs per record, "
        "median (each round); every variant writes the same fields\n"
    )
    print("| record | formatter | µs per record | each round | ratio to app |")
    print("|---|---|---:|---|---:|")
    for kind in kinds:
        base = statistics.median(timings[(kind, "app")])
        for name in formatters:
            values = timings[(kind, name)]
            each = ", ".join(f"{v:.1f}" for v in values)
            median = statistics.median(values)
            print(f"| {kind} | {name} | {median:.1f} | {each} | {median / base:.2f} |")
    print(
        "\nload average (1 min) at the start and after each round: "
        + ", ".join(f"{load[0]:.1f}" for load in loads)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
