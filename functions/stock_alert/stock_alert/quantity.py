"""Reading numbers out of product documents, whatever BSON type the application stored.

int, Int64, double and Decimal128 compare exactly (as `Decimal`); anything else is reported as a
problem for the caller to log and count, never raised: one odd document must not stop alerts.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from bson import Decimal128


class Level(Enum):
    """How low a product's stock is, in increasing severity."""

    OK = "OK"
    LOW_STOCK = "LOW_STOCK"
    OUT_OF_STOCK = "OUT_OF_STOCK"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.OK: 0, Level.LOW_STOCK: 1, Level.OUT_OF_STOCK: 2}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Reading:
    """A number read from a document, or why there is none."""

    value: Decimal | None
    problem: str | None = None


def field_value(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted `path` of nested documents, or `_MISSING`."""
    current: Any = document
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def read_number(document: Mapping[str, Any], path: str) -> Reading:
    value = field_value(document, path)
    if value is _MISSING:
        return Reading(None, "missing")
    if value is None:
        return Reading(None, "null")
    if isinstance(value, bool):
        # bool is an int in Python, but `true` is not a quantity.
        return Reading(None, "boolean")
    if isinstance(value, int):  # int32 and Int64 both arrive as int subclasses
        return Reading(Decimal(value))
    if isinstance(value, float):
        number = Decimal(value)
    elif isinstance(value, Decimal128):
        number = value.to_decimal()
    elif isinstance(value, str):
        return Reading(None, "string")
    else:
        return Reading(None, type(value).__name__)
    if not number.is_finite():
        return Reading(None, "not a finite number")
    return Reading(number)


def classify(quantity: Decimal, threshold: Decimal) -> Level:
    """Zero (or less, when oversold) is out of stock; up to the threshold is low."""
    if quantity <= 0:
        return Level.OUT_OF_STOCK
    if quantity <= threshold:
        return Level.LOW_STOCK
    return Level.OK


def format_number(value: Decimal) -> str:
    """4 -> "4", Decimal("4.50") -> "4.5", 1e3 -> "1000": no exponent, no trailing zeros."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")
