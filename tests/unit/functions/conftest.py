"""Fixtures shared by the function tests: sample events, handler modules loaded by path, a
Lambda context, and moto's in-process AWS with the idempotency table every function needs.
"""

import functools
import importlib.util
import itertools
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_xray_sdk.core  # noqa: F401
import boto3
import pytest
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from change_contract import OPERATION_TYPES

# Imported above on purpose, before the unit tier blocks sockets: the X-Ray SDK's global recorder
# opens a UDP socket (it sends nothing until a segment is emitted) the first time Powertools'
# Tracer loads it, which the socket guard would otherwise refuse.

ROOT = Path(__file__).resolve().parents[3]
EVENTS_DIR = ROOT / "events"
IDEMPOTENCY_TABLE = "reactions-idempotency"
_unique = itertools.count()


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/12/03/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def read_event(name: str) -> dict[str, Any]:
    """A sample from `events/`, as Lambda would receive it."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def emitted_metrics(text: str) -> dict[str, float]:
    """Sum of each metric in the EMF lines Powertools printed (captured stdout)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
    return totals


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    return read_event


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def create_idempotency_table() -> None:
    """Powertools' idempotency table (key `id`), as template.yaml defines it."""
    boto3.client("dynamodb").create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def load_handler_module(folder: str) -> ModuleType:
    """Import `functions/<folder>/app.py` under a fresh, unique module name (a cold start).

    Every handler module is called `app`, so each is loaded by path; settings and clients are
    created at import, so load it after the environment and AWS stand-in are ready.
    """
    name = f"_app_{folder}_{next(_unique)}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / folder / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@pytest.fixture
def load_app() -> Iterator[Callable[[str], ModuleType]]:
    """`load_handler_module`, with every module it loaded forgotten after the test."""
    loaded: list[str] = []

    def load(folder: str) -> ModuleType:
        module = load_handler_module(folder)
        loaded.append(module.__name__)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


# moto difference: in-process moto checks a DynamoDB condition and then writes without a lock, so
# two threads can both pass `attribute_not_exists` (seen: two concurrent deliveries both acted,
# about one run in ten). DynamoDB applies a conditional write atomically. Test-only workaround:
# serialise moto's item operations, which restores DynamoDB's atomicity.
_ITEM_OPERATIONS = ("put_item", "update_item", "delete_item", "get_item", "transact_write_items")
_moto_dynamodb_lock = threading.RLock()


def _atomic(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _moto_dynamodb_lock:
            return operation(*args, **kwargs)

    return locked


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS with the idempotency table (Powertools layout) created."""
    for name in _ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        monkeypatch.setattr(DynamoDBBackend, name, _atomic(original))
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MongoChangeReactions")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    with mock_aws():
        create_idempotency_table()
        yield


# --- malformed `detail` documents for property tests -----------------------------------------

_VALID_DETAIL = read_event("insert-low-stock")["detail"]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_REQUIRED = ["schemaVersion", "eventId", "operationType", "clusterTime", "ns", "documentKey"]


@st.composite
def malformed_details(draw: st.DrawFn) -> Any:
    """A detail that is not a valid change event: garbage, or a valid one with a key broken."""
    if draw(st.booleans()):
        return draw(
            _json_values.filter(lambda value: not isinstance(value, dict))
            | st.dictionaries(st.text(max_size=6), _json_values, max_size=4)
        )
    detail = json.loads(json.dumps(_VALID_DETAIL))
    key = draw(st.sampled_from(_REQUIRED))
    if draw(st.booleans()):
        del detail[key]
    else:
        broken = {
            "schemaVersion": st.sampled_from([0, 2, "1", None]),
            "eventId": st.sampled_from(["", None, 7]),
            "operationType": st.text(max_size=8).filter(lambda text: text not in OPERATION_TYPES),
            "clusterTime": st.sampled_from([{"t": -1, "i": 0}, {"t": "x"}, 5, None]),
            "ns": st.sampled_from([None, {"coll": "productos"}, "clase.productos"]),
            "documentKey": st.sampled_from([None, "id", 3]),
        }[key]
        detail[key] = draw(broken)
    return detail
