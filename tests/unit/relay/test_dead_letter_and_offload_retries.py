"""The two writes the relay cannot go past, retried through one helper, and the DLQ's size limit.

The sink reports a stop as False, the encoder as OffloadInterruptedError; both keep their own log
message and count `Retries`. A dead letter is fitted to its queue's MaximumMessageSize (1 MiB at
most), which the template sets on the relay's queue.
"""

import base64
import json
import threading
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localdev.template_model import load_template
from relay.deadletter import SQS_MAX_MESSAGE_BYTES, DeadLetter, SqsDeadLetterSink
from relay.encoder import ChangeEncoder, OffloadInterruptedError
from relay.telemetry import Stats
from tests.unit.relay.helpers import RecordingStop, client_error, raw_change

OLD_SQS_LIMIT = 262_144  # SQS's limit before 1 MiB, and what a queue made long ago may still cap


class FlakyAws:
    """An SQS or S3 client whose first `failures` writes raise; records what was stored."""

    def __init__(self, failures: int, *, queue_max: int = SQS_MAX_MESSAGE_BYTES) -> None:
        self.failures = failures
        self.queue_max = queue_max
        self.stored: list[dict[str, Any]] = []
        self.attribute_reads = 0

    def _write(self, operation: str, **request: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise client_error("ServiceUnavailable", 503, operation)
        self.stored.append(request)
        return {}

    def send_message(self, **request: Any) -> dict[str, Any]:
        return self._write("SendMessage", **request)

    def put_object(self, **request: Any) -> dict[str, Any]:
        return self._write("PutObject", **request)

    def get_queue_attributes(self, **_request: Any) -> dict[str, Any]:
        self.attribute_reads += 1
        return {"Attributes": {"MaximumMessageSize": str(self.queue_max)}}


class RecordedWait:
    """A sink's wait: records each delay, never sleeps, answers `stop`."""

    def __init__(self, *, stop: bool = False) -> None:
        self.delays: list[float] = []
        self.stop = stop

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        return self.stop


def letter(event_id: str = "e1", change: Any = None) -> DeadLetter:
    return DeadLetter(event_id, "rejected", "InvalidArgument", change, None)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[Any]:
    return [record for record in caplog.records if record.getMessage() == text]


# --- the dead-letter sink ------------------------------------------------------------------------


def test_the_sink_retries_a_failed_send_with_doubling_delays_until_stored(caplog):
    # GIVEN a queue that refuses the first three sends
    sqs, stats, wait = FlakyAws(failures=3), Stats(), RecordedWait()
    sink = SqsDeadLetterSink(sqs, "q", "r1", stats, wait=wait)

    # WHEN a letter is sent
    stored = sink.send(letter(), should_stop=lambda: False)

    # THEN it is stored on the fourth try, with its own warnings and counters
    assert stored
    assert len(sqs.stored) == 1
    assert wait.delays == pytest.approx([0.2, 0.4, 0.8])
    assert stats.total("Retries") == 3
    assert stats.total("DeadLettered") == 1
    failures = messages(caplog, "dead-letter send failed, retrying")
    assert [(r.event_id, r.funcName) for r in failures] == [("e1", "send")] * 3
    assert [r.retry_in_s for r in failures] == pytest.approx([0.2, 0.4, 0.8])
    assert len(messages(caplog, "change dead-lettered")) == 1


def test_the_sink_asks_should_stop_before_it_waits_and_reports_a_stop_as_false():
    sqs, stats, wait = FlakyAws(failures=5), Stats(), RecordedWait()
    sink = SqsDeadLetterSink(sqs, "q", "r1", stats, wait=wait)

    stored = sink.send(letter(), should_stop=lambda: True)

    assert stored is False
    assert wait.delays == []  # stopped without waiting
    assert sqs.stored == []
    assert (stats.total("Retries"), stats.total("DeadLettered")) == (1, 0)


def test_the_sink_reports_a_stop_from_its_wait_as_false():
    sqs, stats, wait = FlakyAws(failures=5), Stats(), RecordedWait(stop=True)
    sink = SqsDeadLetterSink(sqs, "q", "r1", stats, wait=wait)

    assert sink.send(letter(), should_stop=lambda: False) is False
    assert wait.delays == [0.2]
    assert stats.total("Retries") == 1


# --- the oversize upload -------------------------------------------------------------------------


def oversize_update() -> Any:
    """An update whose own change is over a 2,000-byte entry limit: only S3 can carry it."""
    return raw_change(
        1,
        operation="update",
        updateDescription={"updatedFields": {"nota": "u" * 5_000}, "removedFields": []},
        fullDocument={"_id": 1, "nota": "a" * 100},
    )


def offloading_encoder(s3: FlakyAws, stats: Stats, stop: threading.Event) -> ChangeEncoder:
    return ChangeEncoder(
        bus_name="bus",
        source="src",
        max_entry_bytes=2_000,
        stats=stats,
        s3=s3,
        bucket="oversize",
        stop=stop,
    )


def test_the_upload_retries_with_doubling_delays_until_the_payload_is_stored(caplog):
    # GIVEN a bucket that refuses the first two uploads
    s3, stats, stop = FlakyAws(failures=2), Stats(), RecordingStop()

    # WHEN an oversize change is encoded
    item = offloading_encoder(s3, stats, stop).encode(oversize_update())

    # THEN its payload is stored on the third try and a pointer goes on the bus
    assert item.entry is not None
    assert "payloadRef" in json.loads(item.entry["Detail"])
    assert [request["Key"] for request in s3.stored] == [
        json.loads(item.entry["Detail"])["payloadRef"]["key"]
    ]
    assert stop.delays == pytest.approx([0.2, 0.4])
    assert stats.total("Retries") == 2
    assert stats.total("OversizeOffloaded") == 1
    failures = messages(caplog, "oversize payload upload failed, retrying")
    assert [(r.event_id, r.funcName) for r in failures] == [(item.event_id, "_offload")] * 2


def test_a_stop_during_the_upload_raises_offload_interrupted_from_the_aws_error():
    # GIVEN a bucket that keeps failing, and a relay told to stop
    s3, stats, stop = FlakyAws(failures=10), Stats(), RecordingStop()
    stop.set()

    # WHEN an oversize change is encoded
    with pytest.raises(OffloadInterruptedError) as interrupted:
        offloading_encoder(s3, stats, stop).encode(oversize_update())

    # THEN one try, one wait, and the S3 error as the cause
    assert str(interrupted.value) == "820000000100000001"
    assert interrupted.value.__cause__ is not None
    assert "ServiceUnavailable" in str(interrupted.value.__cause__)
    assert stop.delays == [0.2]
    assert stats.total("Retries") == 1
    assert stats.total("OversizeOffloaded") == 0


# --- the dead letter's size ----------------------------------------------------------------------


def test_sqs_accepts_one_mebibyte_and_the_relays_queue_is_set_to_it():
    relay_queue = load_template().resources["RelayDeadLetterQueue"]["Properties"]

    assert SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert relay_queue["MaximumMessageSize"] == SQS_MAX_MESSAGE_BYTES


def big_change(note_bytes: int) -> Any:
    return raw_change(3, fullDocument={"_id": 1, "nota": "z" * note_bytes})


@mock_aws
def test_a_letter_over_the_old_256_kib_limit_is_stored_whole():
    # GIVEN a queue as the stack makes it (1 MiB) and a change of about 400 KB
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(
        QueueName="dlq", Attributes={"MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES)}
    )["QueueUrl"]
    change = big_change(400_000)

    # WHEN it is dead-lettered (with no bucket to spill to)
    sink = SqsDeadLetterSink(sqs, url, "r1", Stats(), wait=lambda _delay: True)
    stored = sink.send(letter("e3", change), should_stop=lambda: False)

    # THEN the message holds both the raw change and its readable copy
    assert stored
    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert base64.b64decode(body["rawEventBson"]) == change.raw
    assert json.loads(body["event"])["fullDocument"]["nota"] == "z" * 400_000


@mock_aws
def test_a_queue_still_capped_at_256_kib_gets_letters_that_fit_it():
    # GIVEN a queue made with the old limit, a bucket, and a change of about 400 KB
    sqs = boto3.client("sqs", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="oversize")
    url = sqs.create_queue(
        QueueName="old-dlq", Attributes={"MaximumMessageSize": str(OLD_SQS_LIMIT)}
    )["QueueUrl"]
    change = big_change(400_000)
    sink = SqsDeadLetterSink(
        sqs, url, "r1", Stats(), s3=s3, bucket="oversize", wait=lambda _delay: True
    )

    # WHEN it is dead-lettered, a refused send ending the test at once
    stored = sink.send(letter("e3", change), should_stop=lambda: False)

    # THEN the queue takes it at once, the raw change kept in S3 (no send was refused)
    assert stored
    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["event"] is None
    ref = body["rawEventRef"]
    assert s3.get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read() == change.raw


def test_without_a_bucket_a_raw_change_over_the_queues_limit_is_left_out_and_logged(caplog):
    sqs, stats = FlakyAws(failures=0, queue_max=OLD_SQS_LIMIT), Stats()
    sink = SqsDeadLetterSink(sqs, "q", "r1", stats)

    assert sink.send(letter("e3", big_change(400_000)), should_stop=lambda: False)

    body = json.loads(sqs.stored[0]["MessageBody"])
    assert body["rawEventOmitted"] is True
    assert body["rawEventBson"] is None
    assert len(sqs.stored[0]["MessageBody"]) <= OLD_SQS_LIMIT
    [record] = messages(caplog, "dead letter too large for sqs, raw change left out")
    assert (record.levelname, record.event_id, record.limit_bytes) == (
        "ERROR",
        "e3",
        OLD_SQS_LIMIT,
    )


def test_the_queues_limit_is_read_once_and_never_taken_above_what_sqs_accepts():
    # GIVEN a queue that claims a limit larger than SQS accepts
    sqs = FlakyAws(failures=0, queue_max=4 * SQS_MAX_MESSAGE_BYTES)
    sink = SqsDeadLetterSink(sqs, "q", "r1", Stats())

    # WHEN two letters are sent, one of about 1 MB
    sink.send(letter("e1"), should_stop=lambda: False)
    sink.send(letter("e2", big_change(SQS_MAX_MESSAGE_BYTES)), should_stop=lambda: False)

    # THEN the attributes were read once, and the large letter was fitted to 1 MiB
    assert sqs.attribute_reads == 1
    assert len(sqs.stored[1]["MessageBody"]) <= SQS_MAX_MESSAGE_BYTES
    assert json.loads(sqs.stored[1]["MessageBody"])["rawEventOmitted"] is True
