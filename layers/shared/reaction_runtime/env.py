"""Typed readers for environment variables, failing fast with the variable's name and form.

Settings are read once, at cold start; a bad value must stop the function there with a message
an operator can act on, never surface later as a confusing error in the middle of an event.
"""

import os
from collections.abc import Iterable, Mapping

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigError(ValueError):
    """An environment variable is missing or not in the expected form. The message names both."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
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
        raise ConfigError(name, "is required and not set")
    return default


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


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as error:
        raise ConfigError(name, f"expected a whole number, got {value!r}") from error
    if minimum is not None and number < minimum:
        raise ConfigError(name, f"expected a number >= {minimum}, got {number}")
    return number


def env_enum(
    name: str,
    choices: Iterable[str],
    default: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> str:
    """One of `choices` (compared without case), returned as the choice is spelled."""
    options = tuple(choices)
    value = _raw(name, environ)
    if value is None:
        return default
    for option in options:
        if option.lower() == value.lower():
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
