"""Types of the relay's C renderer (fastejson.c): BSON to Relaxed Extended JSON."""

from collections.abc import Callable
from typing import Any

from _typeshed import ReadableBuffer

class FallBackError(ValueError):
    """The input needs the general path: malformed, or a value this module does not render."""

def render(raw: ReadableBuffer, /) -> bytes: ...
def scan(
    raw: ReadableBuffer,
    rendered: set[str] | frozenset[str],
    fragment: Callable[[bytes], Any],
    timestamp: Callable[[int, int], Any],
    /,
) -> dict[str, Any]: ...
