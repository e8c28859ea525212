"""Builders shared by the relay's unit tests: changes as pymongo returns them, and fakes."""

import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import bson
from botocore.exceptions import ClientError
from bson import ObjectId, Timestamp

from change_contract.ejson import STREAM_OPTIONS, ChangeDocument

# The variables every relay setting needs, for a local replica set and the `clase.productos` scope.
RELAY_ENV = {
    "MONGODB_URI": "mongodb://127.0.0.1:27017/?replicaSet=rs0",
    "WATCH_DATABASE": "clase",
    "WATCH_COLLECTIONS": "productos",
    "EVENT_BUS_NAME": "mongodb-changes",
    "EVENT_SOURCE": "mongodb.changestream",
    "CHECKPOINT_TABLE": "relay-checkpoints",
    "RELAY_ID": "clase-productos",
}


def raw_change(seq: int, *, operation: str = "insert", **fields: Any) -> ChangeDocument:
    """A change event as the relay reads it: a `ChangeDocument`, mongod's key order."""
    document: dict[str, Any] = {
        "_id": {"_data": f"8200000001{seq:08X}"},
        "operationType": operation,
        "clusterTime": Timestamp(1_796_300_000 + seq // 10, seq % 10 + 1),
        "wallTime": dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
    }
    if operation != "invalidate":
        document["ns"] = {"db": "clase", "coll": "productos"}
    if operation in {"insert", "update", "replace", "delete"}:
        oid = ObjectId()
        document["documentKey"] = {"_id": oid}
        if operation != "delete":
            document["fullDocument"] = {"_id": oid, "nombreProducto": f"p{seq}", "cantidad": seq}
    document.update(fields)
    return ChangeDocument(bson.encode(document), STREAM_OPTIONS)


def client_error(code: str, status: int = 400, operation: str = "PutEvents") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


Responder = Callable[[list[dict[str, Any]]], dict[str, Any]]


def accept_all(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"FailedEntryCount": 0, "Entries": [{"EventId": "id"} for _ in entries]}


def held_answer(release: threading.Event, started: threading.Event | None = None) -> Responder:
    """An answer that sets `started`, then accepts every entry once `release` is set (at most
    10 s later, so a failing test cannot hang)."""

    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        if started is not None:
            started.set()
        release.wait(10)
        return accept_all(entries)

    return answer


class FakeEvents:
    """A PutEvents client: records every call; `script` decides each answer (default: accept)."""

    def __init__(self, script: list[Responder | Exception] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.script = list(script or [])
        self.lock = threading.Lock()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(list(Entries))
            step = self.script.pop(0) if self.script else accept_all
        if isinstance(step, Exception):
            raise step
        return step(Entries)

    def accepted_details(self) -> list[str]:
        return [entry["Detail"] for call in self.calls for entry in call]


class AsyncFakeEvents(FakeEvents):
    """`FakeEvents` with the lean client's `put_events_async`, which the forwarder prefers.

    Each answer is computed on a worker thread, so a scripted answer may block (held by a test)
    while the forwarder's loop goes on with the other calls, as it does with network waits.
    """

    def __init__(self, script: list[Responder | Exception] | None = None) -> None:
        super().__init__(script)
        self.closed = False

    async def put_events_async(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await asyncio.to_thread(self.put_events, Entries)

    async def aclose(self) -> None:
        self.closed = True


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    def describe(self) -> str:
        return "memory"

    def send(self, letter: Any, *, should_stop: Callable[[], bool]) -> bool:
        self.letters.append(letter)
        return True


class RecordingStop(threading.Event):
    """The relay's stop event: its waits are recorded and never sleep; with `stop_after`, the
    event sets itself on that wait, as a relay told to stop while retrying."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.delays: list[float] = []
        self._stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.delays.append(timeout)
        if self._stop_after is not None and len(self.delays) >= self._stop_after:
            self.set()
        return self.is_set()


def create_checkpoint_table(client: Any, name: str) -> None:
    """The relay's checkpoint table (key `relayId`), as template.yaml defines it."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "relayId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "relayId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
