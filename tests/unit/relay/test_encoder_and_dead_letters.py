"""Encoding on the hot path: oversize tiers, S3 offload, bad input; and what a dead letter holds."""

import base64
import json

import boto3
import pytest
from moto import mock_aws

from change_contract import decode_event
from change_contract.ejson import STREAM_OPTIONS, ChangeDocument
from relay.deadletter import (
    SQS_MAX_MESSAGE_BYTES,
    DeadLetter,
    LoggingDeadLetterSink,
    SqsDeadLetterSink,
)
from relay.encoder import ChangeEncoder
from relay.telemetry import Stats
from tests.unit.relay.helpers import raw_change


def big_update(seq: int = 1, before: int = 3000, after: int = 3000, change: int = 100):
    return raw_change(
        seq,
        operation="update",
        updateDescription={"updatedFields": {"nota": "u" * change}, "removedFields": []},
        fullDocument={"_id": 1, "nota": "a" * after},
        fullDocumentBeforeChange={"_id": 1, "nota": "b" * before},
    )


def encoder(limit: int, stats: Stats, **options) -> ChangeEncoder:
    return ChangeEncoder(
        bus_name="bus", source="src", max_entry_bytes=limit, stats=stats, **options
    )


def detail(item) -> dict:
    assert item.entry is not None
    return json.loads(item.entry["Detail"])


def test_a_change_within_the_limit_is_sent_whole():
    item = encoder(100_000, Stats()).encode(big_update())

    assert "truncated" not in detail(item)
    assert item.entry is not None
    assert (item.entry.get("EventBusName"), item.entry["Source"]) == ("bus", "src")
    assert item.size <= 100_000


def test_first_tier_drops_only_the_pre_image():
    stats = Stats()

    item = encoder(5_000, stats).encode(big_update())

    assert detail(item)["truncated"] == ["fullDocumentBeforeChange"]
    assert detail(item)["fullDocument"]["nota"] == "a" * 3000
    assert stats.total("OversizeShrunk") == 1


def test_second_tier_also_drops_the_full_document_but_keeps_what_changed():
    item = encoder(2_000, Stats()).encode(big_update())

    assert detail(item)["truncated"] == ["fullDocument", "fullDocumentBeforeChange"]
    assert detail(item)["updateDescription"]["updatedFields"] == {"nota": "u" * 100}


@mock_aws
def test_third_tier_stores_the_detail_in_s3_and_decode_fetches_it():
    # GIVEN an update whose change alone is over the limit, and a bucket
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="oversize")
    stats = Stats()
    change = big_update(change=5_000)

    # WHEN it is encoded
    item = encoder(2_000, stats, s3=s3, bucket="oversize", relay_id="r1").encode(change)

    # THEN a pointer goes on the bus, and the contract's decode restores the whole detail
    pointer = detail(item)
    assert set(pointer["payloadRef"]) == {"bucket", "key"}
    assert pointer["payloadRef"]["key"].startswith("relay-oversize/r1/")
    assert item.size <= 2_000
    assert stats.total("OversizeOffloaded") == 1
    envelope = {
        "version": "0",
        "id": "e",
        "detail-type": "MongoDB Change Event",
        "source": "src",
        "account": "123456789012",
        "time": "2026-12-03T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": pointer,
    }
    from change_contract import S3PayloadLoader

    event = decode_event(envelope, payload_loader=S3PayloadLoader(s3))
    assert event.detail.update_description.updated_fields == {"nota": "u" * 5_000}
    assert event.detail.full_document_before_change == {"_id": 1, "nota": "b" * 3000}


def test_too_large_without_a_bucket_is_bad_input_not_an_exception():
    item = encoder(2_000, Stats()).encode(big_update(change=5_000))

    assert item.entry is None
    assert "OVERSIZE_BUCKET" in str(item.error)
    assert item.token is not None  # so the checkpoint can pass it once dead-lettered


def invalid_utf8_change() -> ChangeDocument:
    good = raw_change(7, fullDocument={"_id": 1, "nombreProducto": "XXXX", "cantidad": 1})
    return ChangeDocument(good.raw.replace(b"XXXX", b"\xff\xfeXX"), STREAM_OPTIONS)


def test_invalid_utf8_becomes_a_bad_item_naming_the_event():
    change = invalid_utf8_change()

    item = encoder(1_048_576, Stats()).encode(change)

    assert item.entry is None
    assert item.event_id == "820000000100000007"
    assert "cannot render as Extended JSON" in str(item.error)
    assert item.change is change


@mock_aws
def test_a_dead_letter_keeps_the_raw_change_the_id_and_the_reason():
    # GIVEN a change that cannot even be read as JSON
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    change = invalid_utf8_change()
    sink = SqsDeadLetterSink(sqs, url, "r1", Stats())

    # WHEN it is dead-lettered
    stored = sink.send(
        DeadLetter("820000000100000007", "cannot render", "BadInput", change, None),
        should_stop=lambda: False,
    )

    # THEN the message holds the exact raw BSON, so nothing is lost
    assert stored
    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["eventId"] == "820000000100000007"
    assert body["errorCode"] == "BadInput"
    assert body["reason"] == "cannot render"
    assert body["relayId"] == "r1"
    assert base64.b64decode(body["rawEventBson"]) == change.raw
    assert body["event"] is None


@mock_aws
def test_a_dead_letter_too_large_for_sqs_keeps_its_raw_change_in_s3():
    sqs = boto3.client("sqs", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="oversize")
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    change = raw_change(3, fullDocument={"_id": 1, "nota": "z" * SQS_MAX_MESSAGE_BYTES})
    sink = SqsDeadLetterSink(sqs, url, "r1", Stats(), s3=s3, bucket="oversize")

    sink.send(DeadLetter("e3", "too big", "BadInput", change, None), should_stop=lambda: False)

    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    ref = body["rawEventRef"]
    assert s3.get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read() == change.raw


def test_without_a_queue_a_permanent_failure_is_logged_and_the_relay_goes_on(caplog):
    sink = LoggingDeadLetterSink(Stats())

    assert sink.send(DeadLetter("e1", "nope", "MalformedDetail", None, None), should_stop=bool)

    [record] = [r for r in caplog.records if "no dead-letter queue" in r.getMessage()]
    assert record.levelname == "ERROR"
    assert record.event_id == "e1"
    assert record.error_code == "MalformedDetail"


@mock_aws
def test_sqs_outage_is_retried_until_stored_or_stopped():
    sqs = boto3.client("sqs", region_name="us-east-1")
    stats = Stats()
    sink = SqsDeadLetterSink(
        sqs, "https://sqs.us-east-1.amazonaws.com/1/missing", "r1", stats, wait=lambda _s: False
    )
    attempts = []

    def stop_after_three() -> bool:
        attempts.append(1)
        return len(attempts) >= 3

    stored = sink.send(DeadLetter("e", "r", "c", None, None), should_stop=stop_after_three)

    assert not stored
    assert stats.total("Retries") == 3


@pytest.mark.parametrize("operation", ["drop", "invalidate"])
def test_stream_events_are_encoded_with_their_token(operation):
    item = encoder(1_048_576, Stats()).encode(raw_change(5, operation=operation))

    assert item.error is None
    assert item.start_after is (operation == "invalidate")
