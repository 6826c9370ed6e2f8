"""Field constraints of the request bodies: what the API says about a bad value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.schemas import ItemCreate, UserUpdateMe


def _message(**body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        ItemCreate.model_validate({"name": "Cup", "price": "1.00", **body})
    return str(caught.value.errors()[0]["msg"])


def test_a_blank_name_is_refused_after_stripping() -> None:
    assert _message(name="   ") == "String should have at least 1 character"
    assert ItemCreate.model_validate({"name": "  Cup ", "price": "1"}).name == "Cup"


def test_length_messages_count_characters() -> None:
    assert _message(name="x" * 201) == "String should have at most 200 characters"
    assert _message(tags=["x" * 33]) == "String should have at most 32 characters"
    assert _message(tags=[" "]) == "String should have at least 1 character"
    assert _message(description="x" * 5001) == "String should have at most 5000 characters"


def test_control_characters_are_still_refused() -> None:
    assert "control characters" in _message(name="a\x00b")
    with pytest.raises(ValidationError, match="control characters"):
        UserUpdateMe.model_validate({"full_name": "a\x07"})
