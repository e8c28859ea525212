"""Arm and clear MongoDB fail points (`configureFailPoint`), for fault-injection tests.

Works on SecantusDB started with `--enable-test-commands` and on mongod with test commands enabled.
"""

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from pymongo import MongoClient


def arm(
    client: MongoClient[Any], name: str, mode: Any, data: Mapping[str, Any] | None = None
) -> None:
    """Arm fail point `name` with `mode` ("alwaysOn", {"times": n}, ...) and its `data`."""
    command: dict[str, Any] = {"configureFailPoint": name, "mode": mode}
    if data is not None:
        command["data"] = dict(data)
    client.admin.command(command)


def clear(client: MongoClient[Any], name: str) -> None:
    client.admin.command({"configureFailPoint": name, "mode": "off"})


@contextlib.contextmanager
def fail_point(
    client: MongoClient[Any], name: str, mode: Any, data: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """Arm a fail point for the duration of the block, and always clear it afterwards."""
    arm(client, name, mode, data)
    try:
        yield
    finally:
        clear(client, name)
