"""Routing: the template's own rule patterns send each event to exactly the right functions.

The patterns come from `template.yaml` through `localdev.template_model` (never copied here) and
are evaluated with moto's EventBridge matcher in-process. `test_matcher_semantics.py` checks that
matcher against AWS's documented semantics, and `AwsEventPattern` below corrects the one
difference that matters here (booleans are not numbers).
"""

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from localdev.samples import SAMPLES
from localdev.template_model import TemplateModel, load_template
from tests.unit.template.aws_matcher import pattern_matches

EVENTS_DIR = Path(__file__).resolve().parents[3] / "events"

STOCK, UPDATE, AUDIT = "StockAlertFunction", "UpdateNotifierFunction", "AuditWriterFunction"

# What each sample must reach under the default parameters (threshold 10, episode mode): written
# out by hand from the function specifications, not derived from the patterns.
DEFAULT_ROUTES: dict[str, set[str]] = {
    "insert": {STOCK, AUDIT},  # cantidad 25; episode mode sees every insert (see the template)
    "insert-low-stock": {STOCK, AUDIT},  # cantidad 4
    "update-low-stock": {STOCK, UPDATE, AUDIT},  # 12 -> 8
    "update-low-stock-replayed": {STOCK, UPDATE, AUDIT},  # the function decides about replays
    "update-low-stock-no-pre-image": {STOCK, UPDATE, AUDIT},  # -> 9
    "update-out-of-stock": {STOCK, UPDATE, AUDIT},  # 8 -> 0
    "update-restock": {STOCK, UPDATE, AUDIT},  # 0 -> 40: ends the episode
    "update-price-change": {UPDATE, AUDIT},  # 25, quantity unchanged
    "update-field-removed": {UPDATE, AUDIT},  # 30, no pre-image, quantity unchanged
    "update-in-transaction": {UPDATE, AUDIT},  # 25 -> 24, never low
    "replace": {STOCK, AUDIT},  # cantidad 6
    "delete": {AUDIT},
    "delete-with-pre-image": {AUDIT},  # a delete is not a stock change
    "drop": set(),
    "invalidate": set(),
    "backfill-low-stock": {STOCK, AUDIT},  # a backfill read is an insert, cantidad 3
    "malformed-not-a-change": set(),
}

# Differences from DEFAULT_ROUTES under other parameter values.
VARIANTS: dict[str, tuple[dict[str, str], dict[str, set[str]]]] = {
    "every mode: a restock is no alert, an insert above the threshold neither": (
        {"AlertMode": "every"},
        {"update-restock": {UPDATE, AUDIT}, "insert": {AUDIT}},
    ),
    "threshold 30 follows the parameter": (
        {"LowStockThreshold": "30"},
        {
            "insert": {STOCK, AUDIT},
            "update-price-change": {STOCK, UPDATE, AUDIT},
            "update-field-removed": {STOCK, UPDATE, AUDIT},
            "update-in-transaction": {STOCK, UPDATE, AUDIT},
        },
    ),
    "threshold 0: only empty shelves, and episodes that may end": (
        {"LowStockThreshold": "0"},
        {
            "update-low-stock": {UPDATE, AUDIT},  # pre-image 12: no episode to end
            "update-low-stock-replayed": {UPDATE, AUDIT},
            # no pre-image: only the function's alert state can tell whether an episode ends
            "update-low-stock-no-pre-image": {STOCK, UPDATE, AUDIT},
            "replace": {STOCK, AUDIT},  # replace without pre-image: same reason
        },
    ),
    "every mode, threshold 0": (
        {"AlertMode": "every", "LowStockThreshold": "0"},
        {
            "insert": {AUDIT},
            "insert-low-stock": {AUDIT},
            "backfill-low-stock": {AUDIT},
            "update-low-stock": {UPDATE, AUDIT},
            "update-low-stock-replayed": {UPDATE, AUDIT},
            "update-low-stock-no-pre-image": {UPDATE, AUDIT},
            "update-restock": {UPDATE, AUDIT},
            "replace": {AUDIT},
        },
    ),
    "per-document threshold: every product change goes to the function": (
        {"ThresholdField": "umbral"},
        {
            "update-price-change": {STOCK, UPDATE, AUDIT},
            "update-field-removed": {STOCK, UPDATE, AUDIT},
            "update-in-transaction": {STOCK, UPDATE, AUDIT},
        },
    ),
    "replaces notified": (
        {"NotifyOnReplace": "true"},
        {"replace": {STOCK, UPDATE, AUDIT}},
    ),
    "another event source": (
        {"EventSource": "inventory.changes"},
        {name: set() for name in SAMPLES},  # the samples say mongodb.changestream
    ),
}


def load_sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def routed_functions(model: TemplateModel, event: Mapping[str, Any]) -> set[str]:
    """The functions that the template's rules would invoke for this event."""
    return {
        function
        for rule in model.rules
        if pattern_matches(rule.event_pattern, event)
        for function in rule.function_targets
    }


@pytest.fixture(scope="module")
def default_model() -> TemplateModel:
    return load_template()


def test_every_sample_has_an_expected_route():
    assert set(DEFAULT_ROUTES) == set(SAMPLES)
    assert {path.stem for path in EVENTS_DIR.glob("*.json")} - {"env"} == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(DEFAULT_ROUTES))
def test_default_parameters_route_each_sample(default_model, name):
    # GIVEN the template under its default parameters and one sample event
    event = load_sample(name)

    # WHEN the rules' patterns are matched against it
    routed = routed_functions(default_model, event)

    # THEN exactly the functions that should react receive it
    assert routed == DEFAULT_ROUTES[name]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parameters_change_the_routes(variant):
    overrides, differences = VARIANTS[variant]
    model = load_template(parameters=overrides)
    expected = {**DEFAULT_ROUTES, **differences}
    actual = {name: routed_functions(model, load_sample(name)) for name in SAMPLES}
    wrong = {
        name: (actual[name], expected[name]) for name in SAMPLES if actual[name] != expected[name]
    }
    assert wrong == {}, "sample: (routed, expected)"


# --- events the samples do not cover ---------------------------------------------------------


def _variant(name: str, **detail_changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_sample(name))
    for key, value in detail_changes.items():
        if value is None:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event


def _oversize(name: str) -> dict[str, Any]:
    # What the relay sends when even the shrunk event is too large: content left out, a pointer.
    event = _variant(name, fullDocument=None, fullDocumentBeforeChange=None, updateDescription=None)
    event["detail"]["truncated"] = ["fullDocumentBeforeChange", "fullDocument", "updateDescription"]
    event["detail"]["payloadRef"] = {"bucket": "oversize", "key": "clase/productos/abc.json"}
    return event


def _backfill_read() -> dict[str, Any]:
    event = _variant("insert-low-stock", origin="backfill", snapshotTime={"t": 1, "i": 1})
    event["detail"]["eventId"] = "backfill:0f00"
    return event


def _gap() -> dict[str, Any]:
    event = load_sample("insert")
    event["detail-type"] = "MongoDB Change Stream Gap"
    event["detail"] = {"schemaVersion": 1, "eventId": "gap:1", "from": {"t": 1, "i": 1}}
    return event


def _quantity_set_to(value: Any) -> dict[str, Any]:
    """update-low-stock setting the quantity to `value`, in its update and its looked-up doc."""
    event = _variant("update-low-stock", fullDocument={"cantidad": value})
    event["detail"]["updateDescription"]["updatedFields"]["cantidad"] = value
    return event


def _late_lookup(
    name: str, looked_up: int, *, own: Any = None, before: int | None = None, pre_image: bool = True
) -> dict[str, Any]:
    """An update whose looked-up document shows `looked_up` units (a later change), setting its
    own quantity to `own` (default: the sample's) from a pre-image of `before` (or none)."""
    event = copy.deepcopy(load_sample(name))
    detail = event["detail"]
    detail["fullDocument"]["cantidad"] = looked_up
    if own is not None:
        detail["updateDescription"]["updatedFields"]["cantidad"] = own
    if not pre_image:
        detail.pop("fullDocumentBeforeChange", None)
    elif before is not None:
        detail["fullDocumentBeforeChange"]["cantidad"] = before
    return event


def _other_collection(name: str, db: str, coll: str) -> dict[str, Any]:
    return _variant(name, ns={"db": db, "coll": coll})


EXTRA_CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "oversize low-stock update reaches stock (the function fetches the payload)": (
        _oversize("update-price-change"),
        {STOCK, UPDATE, AUDIT},
    ),
    "fullDocument dropped for size: stock still sees it": (
        _variant("update-price-change", fullDocument=None, truncated=["fullDocument"]),
        {STOCK, UPDATE, AUDIT},
    ),
    "pre-image null (whenAvailable found none) counts as no pre-image": (
        _variant("update-low-stock", fullDocumentBeforeChange=None),
        {STOCK, UPDATE, AUDIT},
    ),
    "restock whose pre-image was null: the function settles it with its state": (
        _variant(
            "update-restock",
            fullDocumentBeforeChange=None,
        ),
        {STOCK, UPDATE, AUDIT},
    ),
    "restock from above the threshold is not a stock event": (
        _variant(
            "update-restock",
            fullDocumentBeforeChange={"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b002"}, "cantidad": 20},
        ),
        {UPDATE, AUDIT},
    ),
    "update deleted before the lookup (fullDocument null), low pre-image, quantity set": (
        _variant("update-restock", fullDocument=None),
        {STOCK, UPDATE, AUDIT},
    ),
    "backfill read of a low product: stock evaluates it, audit records a baseline": (
        _backfill_read(),
        {STOCK, AUDIT},
    ),
    "a low product in another collection is no stock alert": (
        _other_collection("update-low-stock", "clase", "pedidos"),
        {UPDATE, AUDIT},
    ),
    "a low product in another database is no stock alert": (
        _other_collection("update-low-stock", "otra", "productos"),
        {UPDATE, AUDIT},
    ),
    "writes to the audit collection are never audited (loop guard)": (
        _other_collection("insert", "clase", "audit_log"),
        set(),
    ),
    "an audit_log collection in another database is audited": (
        _other_collection("insert", "otra", "audit_log"),
        {AUDIT},
    ),
    # An update to 4 units whose pre-image (12) was above the threshold: only the numeric filters
    # on the new quantity (fullDocument, updatedFields) could let it through; they see no number.
    "quantity as Decimal128 is not a JSON number: not filtered as low": (
        _quantity_set_to({"$numberDecimal": "4"}),
        {UPDATE, AUDIT},
    ),
    "quantity as a string is not a number": (
        _quantity_set_to("4"),
        {UPDATE, AUDIT},
    ),
    "quantity true is not a number (AWS semantics; moto alone would say 1 <= 10)": (
        _quantity_set_to(True),
        {UPDATE, AUDIT},
    ),
    "an insert reaches stock whatever its quantity (episode mode)": (
        _variant("insert", fullDocument={"cantidad": {"$numberDecimal": "40"}}),
        {STOCK, AUDIT},
    ),
    "a stream gap reaches no function (it goes to the operations topic)": (_gap(), set()),
    # The looked-up fullDocument is read after the change and may show a later state.
    "a sale to 8 whose lookup already shows a restock to 40, pre-image 12: its own quantity": (
        _late_lookup("update-low-stock", 40),
        {STOCK, UPDATE, AUDIT},
    ),
    "a sale to 0 whose lookup shows 40, without pre-image": (
        _late_lookup("update-out-of-stock", 40, pre_image=False),
        {STOCK, UPDATE, AUDIT},
    ),
    "a sale to 8 of a product deleted before the lookup, pre-image 12": (
        _variant("update-low-stock", fullDocument=None),
        {STOCK, UPDATE, AUDIT},
    ),
    "a sale to 11 (above) whose lookup shows 40, pre-image 25: no stock event": (
        _late_lookup("update-low-stock", 40, own=11, before=25),
        {UPDATE, AUDIT},
    ),
    "an own quantity as Decimal128 is not a JSON number: not filtered as low": (
        _late_lookup("update-low-stock", 40, own={"$numberDecimal": "8"}),
        {UPDATE, AUDIT},
    ),
}


@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_edge_cases_route_as_specified(default_model, case):
    event, expected = EXTRA_CASES[case]
    assert routed_functions(default_model, event) == expected


# The same late-lookup events under other parameters: (parameters, event, expected functions).
LATE_LOOKUP_VARIANTS: dict[str, tuple[dict[str, str], dict[str, Any], set[str]]] = {
    "every mode: a sale to 8 whose lookup shows 40 pages from its own quantity": (
        {"AlertMode": "every"},
        _late_lookup("update-low-stock", 40),
        {STOCK, UPDATE, AUDIT},
    ),
    "every mode: a sale to 11 whose lookup shows 40 is no stock event": (
        {"AlertMode": "every"},
        _late_lookup("update-low-stock", 40, own=11, before=25),
        {UPDATE, AUDIT},
    ),
    "every mode, threshold 5: a sale to 8 is above it": (
        {"AlertMode": "every", "LowStockThreshold": "5"},
        _late_lookup("update-low-stock", 40),
        {UPDATE, AUDIT},
    ),
    "threshold 5: a sale to 4 whose lookup shows 40, pre-image 12": (
        {"LowStockThreshold": "5"},
        _late_lookup("update-low-stock", 40, own=4),
        {STOCK, UPDATE, AUDIT},
    ),
}


@pytest.mark.parametrize("case", sorted(LATE_LOOKUP_VARIANTS))
def test_an_update_reaches_stock_by_its_own_quantity_under_each_mode(case):
    parameters, event, expected = LATE_LOOKUP_VARIANTS[case]
    assert routed_functions(load_template(parameters=parameters), event) == expected


def test_stream_gap_goes_to_the_operations_topic(default_model):
    rule = default_model.rule("StreamGapRule")
    assert pattern_matches(rule.event_pattern, _gap())
    assert [target.logical_id for target in rule.targets] == ["OpsTopic"]
    for name in SAMPLES:
        assert not pattern_matches(rule.event_pattern, load_sample(name))


def test_webhook_rides_on_the_update_rule_when_configured():
    without = load_template().rule("UpdateNotifierRule")
    with_hook = load_template(
        parameters={"WebhookUrl": "https://hooks.example.com/x", "WebhookApiKeyValue": "k"}
    ).rule("UpdateNotifierRule")
    assert [t.logical_id for t in without.targets] == [UPDATE]
    assert [t.logical_id for t in with_hook.targets] == [UPDATE, "WebhookDestination"]
    assert with_hook.targets[1].dead_letter_queue == "WebhookDeadLetterQueue"
