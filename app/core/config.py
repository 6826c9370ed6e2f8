"""The service's settings: one class, read from the environment (prefix ``FASTSHIP_``).

The same class is the schema that the operator validates ``AppConfig`` resources
against, so every field carries a description, and fields that hold secrets are
typed ``SecretStr`` and marked ``secret`` in their JSON schema: they may only come
from Kubernetes Secrets, never from a ConfigMap or a custom resource.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "FASTSHIP_"

# The signing key a development checkout runs with. Outside development the service
# refuses to start with it (see Settings._check_production).
DEVELOPMENT_SIGNING_KEY = "development-only-signing-key-change-me-before-production"

_SECRET: JsonDict = {"secret": True}

# Settings that no longer exist, with what to do instead. Set in the environment or in
# an AppConfig, they are refused rather than ignored.
REMOVED_SETTINGS = {
    "event_loop": "is no longer a setting: `serve` runs on asyncio's event loop "
    "(bench/README.md compares it with uvloop); remove the variable",
}

# The least argon2id cost accepted outside FASTSHIP_ENVIRONMENT=test (OWASP's minimum:
# 19 MiB and 2 iterations). Tests may go down to argon2's own minimum.
PRODUCTION_HASH_MEMORY_KIB = 19456
PRODUCTION_HASH_TIME_COST = 2


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


StrList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting of the service. Environment variable = ``FASTSHIP_`` + field name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    def __init__(self, **values: Any) -> None:
        for name, advice in REMOVED_SETTINGS.items():
            if any(key.upper() == env_name(name) for key in os.environ):
                raise SettingsError(f"{env_name(name)}: {advice}")
        super().__init__(**values)

    # --- runtime -------------------------------------------------------------------
    environment: Environment = Field(
        Environment.development,
        description="development, test or production. Outside development the service "
        "refuses to start with the built-in signing key.",
    )
    app_name: str = Field("fastship", min_length=1, max_length=64, description="Shown in docs.")
    host: str = Field("127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `serve` listens on.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of the JSON log lines on stdout, in any case."
    )
    access_log: bool = Field(True, description="One JSON access-log line per request.")
    root_path: str = Field("", description="Path prefix when served behind a proxy.")
    docs_enabled: bool = Field(True, description="Serve /docs, /redoc and /openapi.json.")
    opentelemetry_enabled: bool = Field(
        False,
        description="Emit FastAPI's OpenTelemetry spans, metrics and logs to the globally "
        "configured OpenTelemetry providers. Off, requests skip the checks for them; "
        "Prometheus metrics at /metrics are served either way.",
    )
    shutdown_timeout_seconds: float = Field(
        25.0,
        gt=0,
        le=3600,
        description="On SIGTERM, how long in-flight requests may take to finish.",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Serve /metrics on this port of its own (on `host`) and not on `port`, "
        "so that a route to the API never publishes the metrics; 0 serves them at /metrics "
        "on `port`.",
    )

    # --- database --------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the Postgres database "
        "(postgresql+psycopg://user:password@host:5432/name). Secret. When neither this "
        "nor database_host is set, an embedded SQLite file is used.",
        json_schema_extra=_SECRET,
    )
    database_host: str | None = Field(None, description="Postgres host (instead of a URL).")
    database_port: int = Field(5432, ge=1, le=65535, description="Postgres port.")
    database_name: str = Field("fastship", min_length=1, description="Postgres database name.")
    database_user: str = Field("fastship", min_length=1, description="Postgres user name.")
    database_password: SecretStr | None = Field(
        None, description="Postgres password. Secret.", json_schema_extra=_SECRET
    )
    database_sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = Field("prefer", description="libpq sslmode for Postgres connections.")
    sqlite_path: Path = Field(
        Path(".data/fastship.db"), description="Embedded SQLite file, used without Postgres."
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description="Connections each process keeps open. Budget the database's "
        "max_connections for replicas x (this + db_max_overflow).",
    )
    db_max_overflow: int = Field(
        5,
        ge=0,
        le=200,
        description="Extra connections under load, closed again when returned.",
    )
    db_pool_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=300,
        description="Wait for a free connection before answering 503 (SQLAlchemy's default).",
    )
    db_connect_timeout_seconds: int = Field(
        5, ge=1, le=300, description="Timeout of one connection attempt."
    )
    db_statement_timeout_ms: int = Field(
        15000, ge=0, le=3_600_000, description="Postgres statement_timeout; 0 disables it."
    )
    auto_migrate: bool | None = Field(
        None,
        description="Run migrations when the server starts. Default: on for the embedded "
        "SQLite file, off for Postgres (where `python -m app migrate` or the operator runs "
        "them).",
    )

    # --- auth --------------------------------------------------------------------------
    jwt_secret_key: SecretStr = Field(
        SecretStr(DEVELOPMENT_SIGNING_KEY),
        description="HMAC key that signs access tokens, at least 32 characters. Secret.",
        json_schema_extra=_SECRET,
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", description="Signing algorithm of access tokens."
    )
    jwt_issuer: str = Field("fastship", min_length=1, description="`iss` of access tokens.")
    jwt_audience: str = Field("fastship-api", min_length=1, description="`aud` of access tokens.")
    access_token_expire_minutes: int = Field(
        30, ge=1, le=7 * 24 * 60, description="Lifetime of an access token."
    )
    signup_enabled: bool = Field(True, description="Allow self-service signup.")
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed logins for one email before it is locked."
    )
    login_failure_window_seconds: int = Field(
        900, ge=1, description="Failures older than this are forgotten."
    )
    login_lockout_seconds: int = Field(
        300, ge=1, description="How long an email stays locked after too many failures."
    )
    password_hash_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Password hashes computed at once per process, in threads at a lower "
        "CPU priority (password_hash_niceness), so that logins cannot starve the rest of "
        "the API of CPU.",
    )
    password_hash_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness of the password hashing threads (Linux). At 10 a hash gets "
        "about a tenth of a core that requests also want; at 0 the same share as a "
        "request. Under CPU contention a higher value keeps the API fast and slows "
        "logins down.",
    )
    password_hash_memory_kib: int = Field(
        PRODUCTION_HASH_MEMORY_KIB,
        ge=8,
        description="argon2id memory cost in KiB (default: OWASP's recommended 19 MiB).",
    )
    password_hash_time_cost: int = Field(
        PRODUCTION_HASH_TIME_COST,
        ge=1,
        le=20,
        description="argon2id iterations (OWASP: 2 with 19 MiB).",
    )
    password_hash_parallelism: int = Field(1, ge=1, le=16, description="argon2id lanes.")

    # --- HTTP --------------------------------------------------------------------------
    cors_origins: StrList = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated or a JSON list. Empty: CORS off.",
    )
    max_request_body_bytes: int = Field(
        1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    gzip_minimum_bytes: int = Field(
        1024, ge=0, description="Responses larger than this are gzipped when accepted."
    )
    default_page_size: int = Field(50, ge=1, le=100, description="`limit` when none is given.")

    # --- cache -------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL for a cache shared by all replicas (redis://host:6379/0). "
        "Secret. Without it each process caches in memory.",
        json_schema_extra=_SECRET,
    )
    cache_ttl_seconds: int = Field(
        30, ge=0, le=86400, description="Lifetime of cached entries; 0 disables the cache."
    )
    cache_max_entries: int = Field(10000, ge=1, description="Entries kept by the in-process cache.")
    principal_cache_ttl_seconds: float = Field(
        1.0,
        ge=0,
        le=86400,
        description="Lifetime of a cached account (role, active, token version) that "
        "authenticates requests: how long another replica without a shared Redis may "
        "still accept a token after a password change, disable or demotion. Costs "
        "one query per active account and replica per this many seconds. 0 reads the "
        "account on every request.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        key = self.jwt_secret_key.get_secret_value()
        if len(key) < 32:
            raise ValueError(
                f"FASTSHIP_JWT_SECRET_KEY must be at least 32 characters long (it has {len(key)})"
            )
        if self.database_url is not None and self.database_host is not None:
            raise ValueError("set either FASTSHIP_DATABASE_URL or FASTSHIP_DATABASE_HOST, not both")
        self._check_hash_cost()
        return self

    def _check_hash_cost(self) -> None:
        lanes = self.password_hash_parallelism
        if self.password_hash_memory_kib < 8 * lanes:
            raise ValueError(
                f"FASTSHIP_PASSWORD_HASH_MEMORY_KIB is {self.password_hash_memory_kib}; argon2id "
                f"needs at least 8 KiB per lane, {8 * lanes} with "
                f"FASTSHIP_PASSWORD_HASH_PARALLELISM={lanes}"
            )
        if self.environment is Environment.test:
            return
        for name, value, least in (
            ("MEMORY_KIB", self.password_hash_memory_kib, PRODUCTION_HASH_MEMORY_KIB),
            ("TIME_COST", self.password_hash_time_cost, PRODUCTION_HASH_TIME_COST),
        ):
            if value < least:
                raise ValueError(
                    f"FASTSHIP_PASSWORD_HASH_{name} is {value}, below the least argon2id cost "
                    f"allowed with FASTSHIP_ENVIRONMENT={self.environment.value}: set it to "
                    f"{least} or more (a lower cost is accepted only with "
                    "FASTSHIP_ENVIRONMENT=test)"
                )

    def check_can_serve(self) -> None:
        """Refuse to serve outside development with the built-in signing key. (Only the
        server signs tokens: `migrate` and config validation do not need the key.)"""
        if (
            self.environment is not Environment.development
            and self.jwt_secret_key.get_secret_value() == DEVELOPMENT_SIGNING_KEY
        ):
            raise SettingsError(
                f"FASTSHIP_JWT_SECRET_KEY: is the built-in development key, and "
                f"FASTSHIP_ENVIRONMENT is {self.environment.value}; set it to a random value "
                "of at least 32 characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )

    # --- derived -----------------------------------------------------------------------
    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None or self.database_host is not None

    @property
    def should_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else not self.uses_postgres


class SettingsError(ValueError):
    """Settings that parse but cannot be used; the message names the variable."""


def secret_field_names() -> set[str]:
    """Names of the fields that may only come from Secrets."""
    return {
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
    }


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def format_validation_error(error: ValidationError) -> str:
    """Render settings errors as 'VARIABLE: problem' lines a person can act on."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        where = env_name(loc[0]) if loc else "settings"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = ""
        if loc and loc[0] not in secret_field_names() and isinstance(value, str | int | float):
            shown = f" (got {value!r})"
        lines.append(f"  {where}: {message}{shown}")
    return "invalid settings:\n" + "\n".join(lines)


@dataclass(frozen=True)
class OverrideProblem:
    key: str
    message: str


def validate_overrides(settings: Mapping[str, str]) -> tuple[dict[str, str], list[OverrideProblem]]:
    """Check a map of setting overrides, as an ``AppConfig`` carries them.

    Keys are field names (``log_level``) or environment names (``FASTSHIP_LOG_LEVEL``),
    values are strings as they would appear in the environment. Returns the
    environment-variable form (``{"FASTSHIP_LOG_LEVEL": "DEBUG"}``) and every problem
    found: unknown keys, secret fields (which belong in Secrets) and invalid values.
    The process's own environment is not consulted.
    """
    problems: list[OverrideProblem] = []
    fields: dict[str, str] = {}
    secrets = secret_field_names()
    for raw_key, value in settings.items():
        name = raw_key.lower().removeprefix(ENV_PREFIX.lower())
        if name in REMOVED_SETTINGS:
            problems.append(OverrideProblem(raw_key, REMOVED_SETTINGS[name]))
        elif name not in Settings.model_fields:
            problems.append(OverrideProblem(raw_key, "unknown setting"))
        elif name in secrets:
            problems.append(
                OverrideProblem(
                    raw_key, f"is a secret: set {env_name(name)} from a Kubernetes Secret"
                )
            )
        elif name in fields:
            problems.append(OverrideProblem(raw_key, f"duplicates {name}"))
        elif not isinstance(value, str):
            problems.append(OverrideProblem(raw_key, "must be a string"))
        else:
            fields[name] = value
    if fields:
        try:
            Settings.model_validate(fields)
        except ValidationError as exc:
            for item in exc.errors():
                key = str(item["loc"][0]) if item["loc"] else "settings"
                problems.append(OverrideProblem(key, item["msg"].removeprefix("Value error, ")))
    return {env_name(name): value for name, value in sorted(fields.items())}, problems


def settings_reference() -> str:
    """The settings as a Markdown table (the README's reference is generated from it)."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    secrets = secret_field_names()
    for name, field in Settings.model_fields.items():
        if name in secrets:
            default = "*(secret)*"
        elif field.default_factory is not None:
            default = "`[]`"
        elif field.default is None:
            default = "*(unset)*"
        else:
            value = field.default
            value = value.value if isinstance(value, StrEnum) else value
            default = f"`{json.dumps(value) if isinstance(value, bool) else value}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(name)}` | {default} | {description} |")
    return "\n".join(rows)


@lru_cache
def get_settings() -> Settings:
    return Settings()
