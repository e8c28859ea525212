"""Typed readers for environment variables, failing fast with the variable's name and form.

Settings are read once, at cold start (or relay start); a bad value must stop the process there
with a message an operator can act on, never surface later as a confusing error in the middle of
an event. These are the only typed readers: the functions and the relay both use them.
"""

import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

_Number = TypeVar("_Number", int, float)


class ConfigError(ValueError):
    """An environment variable is missing or not in the expected form. The message names both."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_str(
    name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """A text setting; without a default it is required (unset or blank is an error)."""
    value = _raw(name, environ)
    if value is not None:
        return value
    if default is None:
        raise ConfigError(name, "is required and must not be empty")
    return default


def env_present(name: str, *, environ: Mapping[str, str] | None = None) -> str:
    """A text setting that must be set but may be blank, for when blank has its own meaning."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        raise ConfigError(name, "is required (it may be set empty)")
    return value.strip()


def env_optional(name: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """A text setting where unset or blank means "off"."""
    return _raw(name, environ)


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"expected true or false, got {value!r}")


def _check_bounds(
    name: str,
    number: float,
    shown: str,
    minimum: float | None,
    maximum: float | None,
) -> None:
    """Raise unless `minimum <= number <= maximum` (a bound left as None is not checked)."""
    low_ok = minimum is None or number >= minimum
    high_ok = maximum is None or number <= maximum
    if low_ok and high_ok:
        return
    if minimum is not None and maximum is not None:
        expected = f"between {_bound(minimum)} and {_bound(maximum)}"
    elif minimum is not None:
        expected = f">= {_bound(minimum)}"
    else:
        expected = f"<= {_bound(maximum)}"
    raise ConfigError(name, f"expected a number {expected}, got {shown}")


def _bound(value: float | None) -> str:
    # Integers print whole (4096, not 4.096e+03); floats in their shortest form (0.05).
    return f"{value:g}" if isinstance(value, float) else str(value)


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """A whole number, checked against the bounds given (both inclusive)."""
    return _env_number(name, default, int, "a whole number", minimum, maximum, environ)


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    """A number (`0.5`, `30`, `1e-3`), checked against the bounds given (both inclusive)."""
    return _env_number(name, default, float, "a number", minimum, maximum, environ)


def _env_number(
    name: str,
    default: _Number,
    parse: Callable[[str], _Number],
    form: str,
    minimum: float | None,
    maximum: float | None,
    environ: Mapping[str, str] | None,
) -> _Number:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError as error:
        raise ConfigError(name, f"expected {form}, got {value!r}") from error

    # float() accepts "nan", which no bound can order and no setting means.
    if math.isnan(number):
        raise ConfigError(name, f"expected {form}, got {value!r}")
    _check_bounds(name, number, value, minimum, maximum)
    return number


def env_enum(
    name: str,
    choices: Iterable[str],
    default: str,
    *,
    ignore_case: bool = True,
    environ: Mapping[str, str] | None = None,
) -> str:
    """One of `choices`, returned as the choice is spelled; compared without case unless told."""
    options = tuple(choices)
    value = _raw(name, environ)
    if value is None:
        return default
    for option in options:
        if option == value or (ignore_case and option.lower() == value.lower()):
            return option
    raise ConfigError(name, f"expected one of {', '.join(options)}, got {value!r}")


def env_csv(
    name: str,
    default: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """A comma-separated list; blanks between commas are ignored, order and duplicates kept out."""
    value = _raw(name, environ)
    if value is None:
        return tuple(default)
    items = (item.strip() for item in value.split(","))
    return tuple(dict.fromkeys(item for item in items if item))
