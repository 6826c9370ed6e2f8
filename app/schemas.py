"""Request and response bodies of the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StringConstraints,
)

from app.models import Role


def _no_control_chars(value: str) -> str:
    # NUL and other C0 controls (tab/newline excepted) are never meaningful in these
    # fields, and Postgres refuses NUL outright.
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("must not contain control characters")
    # A JSON escape such as "\udfff" decodes to a lone surrogate, which is no
    # character at all and cannot be encoded as UTF-8 for the database.
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError("must not contain unpaired surrogates")
    return value


_PRINTABLE = AfterValidator(_no_control_chars)
Text = Annotated[str, _PRINTABLE]
# The constraints come first, on the string itself: after a validator they would be
# checked as generic ones, after no stripping ("   " passed as a name) and with
# messages about "items" instead of characters.
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _PRINTABLE
]
Description = Annotated[str, StringConstraints(max_length=5000), _PRINTABLE]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), _PRINTABLE]
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32), _PRINTABLE
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


def _with_offset(moment: datetime) -> datetime:
    # SQLite hands stored timestamps back without an offset; every one is UTC.
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Every timestamp leaves the API in RFC 3339 with its offset ("...Z" for UTC), on
# Postgres and on the embedded SQLite database alike.
Timestamp = Annotated[datetime, AfterValidator(_with_offset)]

# Money leaves the API as a string with exactly two places: no float rounding.
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json")]

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ------------------------------------------------------------------------------


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


# --- users -----------------------------------------------------------------------------


class UserCreate(Strict):
    email: EmailStr
    password: Password
    full_name: FullName | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery",
                    "full_name": "Ada",
                }
            ]
        },
    )


class UserUpdateMe(Strict):
    email: EmailStr | None = None
    full_name: FullName | None = None
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = (
        Field(None, description="Your password: needed to change your email.")
    )


class PasswordChange(Strict):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    new_password: Password


class UserUpdate(Strict):
    """What an admin may change about a user. ``is_active: false`` disables the account."""

    email: EmailStr | None = None
    full_name: FullName | None = None
    role: Role | None = None
    is_active: bool | None = None
    password: Password | None = None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: EmailStr
    full_name: str | None
    role: Role
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp


# --- items -----------------------------------------------------------------------------


class ItemCreate(Strict):
    name: Name
    description: Description | None = None
    price: Price
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Espresso cup",
                    "description": "Porcelain, 80 ml",
                    "price": "12.50",
                    "tags": ["kitchen", "gift"],
                }
            ]
        },
    )


class ItemUpdate(Strict):
    name: Name | None = None
    description: Description | None = None
    price: Price | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    price: Money = Field(description="Decimal with two places, as a string.", examples=["12.50"])
    tags: list[str]
    created_at: Timestamp
    updated_at: Timestamp


class ItemSort(StrEnum):
    created_at = "created_at"
    created_at_desc = "-created_at"
    updated_at = "updated_at"
    updated_at_desc = "-updated_at"
    name = "name"
    name_desc = "-name"
    price = "price"
    price_desc = "-price"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Matching rows in all pages.")
    limit: int
    offset: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    schema_revision: str | None
    expected_revision: str
