"""Bad input raises one clear error type, `ContractError`, naming what was wrong."""

import copy
import json

import pytest
from bson import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from change_contract import ContractError, PayloadRef, decode_event, encode_change
from localdev.samples import LECHE, change, lambda_event, product


def valid_change():
    return change("insert", 1, document_id=LECHE, fullDocument=product(LECHE, "Leche", 3))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["not", "a", "document"], "expected a document, got list"),
        ({"operationType": "insert"}, "missing `_id`"),
        ({**valid_change(), "operationType": "upsert"}, "unknown operationType 'upsert'"),
        ({**valid_change(), "operationType": None}, "missing `operationType`"),
        ({**valid_change(), "clusterTime": 17}, "missing or non-timestamp `clusterTime`"),
        ({**valid_change(), "wallTime": "yesterday"}, "`wallTime` is not a date"),
    ],
)
def test_encode_rejects_bad_input_with_a_clear_message(bad, message):
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode_change(bad)


def test_encode_requires_document_key_for_document_operations():
    bad = valid_change()
    del bad["documentKey"]
    with pytest.raises(ContractError, match="insert without `documentKey`") as caught:
        encode_change(bad)
    assert caught.value.event_id == bad["_id"]["_data"]


def test_a_value_bson_cannot_carry_is_a_contract_error():
    bad = valid_change()
    bad["fullDocument"] = {"_id": LECHE, "object": object()}
    with pytest.raises(ContractError, match="cannot render as Extended JSON"):
        encode_change(bad, fast=False)


def test_omitted_content_is_listed_in_truncated():
    full = valid_change()
    full["fullDocumentBeforeChange"] = product(LECHE, "Leche", 5)
    detail = json.loads(encode_change(full, omit=["fullDocumentBeforeChange"]).entry["Detail"])
    assert "fullDocumentBeforeChange" not in detail
    assert detail["truncated"] == ["fullDocumentBeforeChange"]
    assert detail["fullDocument"]["cantidad"] == 3


def test_a_pointer_keeps_identity_and_drops_content():
    encoded = encode_change(valid_change(), payload_ref=PayloadRef("bucket", "k/1.json"))
    detail = json.loads(encoded.entry["Detail"])
    assert detail["payloadRef"] == {"bucket": "bucket", "key": "k/1.json"}
    assert detail["truncated"] == ["fullDocument"]
    assert set(detail) >= {"eventId", "operationType", "ns", "documentKey", "clusterTime"}


def test_decode_fetches_an_offloaded_payload_transparently():
    original = encode_change(valid_change())
    pointer = encode_change(valid_change(), payload_ref=PayloadRef("bucket", "k/1.json"))
    stored = {("bucket", "k/1.json"): json.loads(original.entry["Detail"])}

    event = decode_event(lambda_event(pointer.entry), payload_loader=lambda b, k: stored[(b, k)])

    assert event.detail.full_document == product(LECHE, "Leche", 3)
    assert event.detail.payload_ref is None


def test_decode_refuses_a_payload_of_another_event():
    pointer = encode_change(valid_change(), payload_ref=PayloadRef("bucket", "k"))
    other = {
        "schemaVersion": 1,
        "eventId": "other",
        "operationType": "drop",
        "clusterTime": {"t": 1, "i": 1},
    }
    with pytest.raises(ContractError, match="belongs to another event"):
        decode_event(lambda_event(pointer.entry), payload_loader=lambda b, k: other)


def test_decode_rejects_other_detail_types():
    event = lambda_event(encode_change(valid_change()).entry)
    event["detail-type"] = "Something Else"
    with pytest.raises(ContractError, match="detail-type is 'Something Else'"):
        decode_event(event)


def test_decode_rejects_unknown_operation_type_naming_the_field():
    event = lambda_event(encode_change(valid_change()).entry)
    event["detail"]["operationType"] = "upsert"
    with pytest.raises(ContractError, match=r"detail\.operationType") as caught:
        decode_event(event)
    assert caught.value.event_id == event["detail"]["eventId"]


def test_decode_rejects_an_update_without_its_description():
    update = change(
        "update", 2, document_id=LECHE, updateDescription={"updatedFields": {}, "removedFields": []}
    )
    event = lambda_event(encode_change(update).entry)
    del event["detail"]["updateDescription"]
    with pytest.raises(ContractError, match="update without `updateDescription`"):
        decode_event(event)


def test_decode_rejects_non_objects():
    with pytest.raises(ContractError, match="expected an EventBridge event object, got str"):
        decode_event("insert")  # type: ignore[arg-type]


def decode_or_error(event):
    try:
        return decode_event(event)
    except ContractError as error:
        return error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
detail_fields = st.sampled_from(
    [
        "schemaVersion",
        "eventId",
        "operationType",
        "ns",
        "documentKey",
        "clusterTime",
        "updateDescription",
    ]
)


@settings(max_examples=200, deadline=None)
@given(field=detail_fields, value=json_values)
def test_malformed_details_raise_contract_error_and_nothing_else(field, value):
    # GIVEN a valid update event with one required field replaced by arbitrary JSON
    update = change(
        "update",
        2,
        document_id=LECHE,
        updateDescription={"updatedFields": {"cantidad": 1}, "removedFields": []},
    )
    event = lambda_event(encode_change(update).entry)
    mutated = copy.deepcopy(event)
    mutated["detail"][field] = value

    # WHEN it is decoded
    outcome = decode_or_error(mutated)

    # THEN it either still is a valid event or raised ContractError (any other error fails)
    if isinstance(outcome, ContractError):
        assert str(outcome).startswith("change event")
    else:
        assert outcome.detail.event_id


def test_cluster_times_order():
    from change_contract import ClusterTime

    assert ClusterTime(t=5, i=2) < ClusterTime(t=5, i=3) < ClusterTime(t=6, i=0)
    assert ClusterTime(t=5, i=2).as_timestamp() == Timestamp(5, 2)
