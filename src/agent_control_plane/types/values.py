"""Validation of the raw values callers hand in: money amounts and JSON payloads.

Both are refused whole, with an error naming the argument, before anything is written.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from agent_control_plane.errors import InvalidInputError

MONEY_SCALE = 9
"""Decimal places the ledger keeps exactly (a billionth of a currency unit)."""

_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MONEY_MAX = Decimal("999999999")

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def to_money(value: object, what: str, *, allow_none: bool = False) -> Decimal | None:
    """Coerce `value` to an exact, non-negative `Decimal`; floats go through `str` so 0.1 stays 0.1."""
    if value is None:
        if allow_none:
            return None
        raise InvalidInputError(f"{what} is required (a non-negative amount such as Decimal('0.25'))")
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be a number, not a bool")
    try:
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError(f"{what} must be a finite number, got {value!r}")
            amount = Decimal(str(value))
        elif isinstance(value, int | str):
            amount = Decimal(value)
        else:
            raise InvalidInputError(
                f"{what} must be a Decimal, int, float or numeric string, got {type(value).__name__}"
            )
    except InvalidOperation:
        raise InvalidInputError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise InvalidInputError(f"{what} must be a finite number, got {value!r}")
    if amount < 0:
        raise InvalidInputError(f"{what} must not be negative, got {amount}")
    if amount > _MONEY_MAX:
        raise InvalidInputError(f"{what} is larger than the ledger keeps ({_MONEY_MAX}), got {amount}")
    if amount != amount.quantize(_MONEY_QUANTUM):
        raise InvalidInputError(
            f"{what} has more than {MONEY_SCALE} decimal places ({amount}); round it before passing it in"
        )
    return amount


def tidy(amount: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation: 50.000000000 → 50, 0.250000000 → 0.25."""
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize()


def to_count(value: object, what: str) -> int | None:
    """A non-negative whole number, or None for "no limit"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be a whole number or None, got {value!r}")
    if value < 0:
        raise InvalidInputError(f"{what} must not be negative, got {value}")
    return value


def _encode_default(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInputError(f"payload holds a non-finite Decimal ({value})")
        return str(value)
    raise TypeError(type(value).__name__)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, Decimals as strings. Raises TypeError/ValueError."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_encode_default,
    )


def to_payload(value: object, what: str, *, max_bytes: int) -> tuple[dict[str, Any], str]:
    """Validate a JSON object payload; returns it with its canonical text (which is what gets stored)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    try:
        text = canonical_json(value)
    except TypeError as exc:
        raise InvalidInputError(
            f"{what} is not JSON-serialisable: it holds a {exc.args[0] if exc.args else 'value'} "
            "(use str, int, float, bool, None, Decimal, lists and dicts with string keys)"
        ) from None
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidInputError(
            f"{what} is {size} bytes as JSON, over the limit of {max_bytes} bytes "
            "(store large data elsewhere and pass a reference, or raise max_payload_bytes)"
        )
    return value, text


def to_name(value: object, what: str, *, max_length: int = 200) -> str:
    """A non-empty, single-line string such as an action, agent or resource name."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not value or value.strip() != value:
        raise InvalidInputError(f"{what} must be non-empty without leading or trailing spaces, got {value!r}")
    if len(value) > max_length or any(ch in value for ch in "\r\n\x00"):
        raise InvalidInputError(f"{what} must be one line of at most {max_length} characters")
    return value
