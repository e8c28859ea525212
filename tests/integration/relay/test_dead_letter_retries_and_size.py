"""The dead-letter sink and the oversize upload over real sockets: retries on a refused connection,
and the relay's DLQ (made as the template makes it, on moto_server) taking letters up to 1 MiB.
"""

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from localdev.template_model import load_template
from relay.deadletter import SQS_MAX_MESSAGE_BYTES, DeadLetter, SqsDeadLetterSink
from relay.encoder import ChangeEncoder, OffloadInterruptedError
from relay.telemetry import Stats
from tests.unit.relay.helpers import RecordingStop, raw_change

ONE_TRY = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2)


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    """A loopback port held bound but not listening: every connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def client(service: Any, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=ONE_TRY,
    )


def test_a_refused_dead_letter_send_is_retried_until_the_relay_stops(refusing_endpoint):
    # GIVEN an SQS endpoint that refuses connections, and a relay that stops after three tries
    stats, delays = Stats(), []

    def wait(delay: float) -> bool:
        delays.append(delay)
        return False

    sqs = client("sqs", refusing_endpoint)
    sink = SqsDeadLetterSink(sqs, f"{refusing_endpoint}/1/dlq", "r1", stats, wait=wait)
    checks = []

    def stop_on_the_third_check() -> bool:
        checks.append(1)
        return len(checks) == 3

    # WHEN a letter is sent
    stored = sink.send(
        DeadLetter("e1", "rejected", "InvalidArgument", None, None),
        should_stop=stop_on_the_third_check,
    )

    # THEN three refused tries, two waits between them, and the letter reported not stored
    assert stored is False
    assert delays == pytest.approx([0.2, 0.4])
    assert stats.total("Retries") == 3
    assert stats.total("DeadLettered") == 0


def test_a_refused_upload_is_retried_until_the_relay_stops(refusing_endpoint):
    # GIVEN an S3 endpoint that refuses connections, and an update only S3 could carry
    stats, stop = Stats(), RecordingStop(stop_after=3)
    encoder = ChangeEncoder(
        bus_name="bus",
        source="src",
        max_entry_bytes=2_000,
        stats=stats,
        s3=client("s3", refusing_endpoint),
        bucket="oversize",
        stop=stop,
    )
    change = raw_change(
        1,
        operation="update",
        updateDescription={"updatedFields": {"nota": "u" * 5_000}, "removedFields": []},
    )

    # WHEN it is encoded
    with pytest.raises(OffloadInterruptedError) as interrupted:
        encoder.encode(change)

    # THEN three refused uploads, then the stop, with the connection error as the cause
    assert stop.delays == pytest.approx([0.2, 0.4, 0.8])
    assert stats.total("Retries") == 3
    assert "Could not connect" in str(interrupted.value.__cause__)


@pytest.mark.parametrize(
    ("note_bytes", "readable_copy"),
    [(400_000, True), (700_000, False)],
    ids=["whole letter", "raw change only"],
)
def test_the_relays_queue_takes_letters_far_over_the_old_256_kib(
    aws_endpoint, note_bytes, readable_copy
):
    # GIVEN the relay's DLQ made with the template's size limit, and no oversize bucket
    properties = load_template().resources["RelayDeadLetterQueue"]["Properties"]
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name="us-east-1")
    url = sqs.create_queue(
        QueueName=f"relay-dlq-{uuid.uuid4().hex[:8]}",
        Attributes={"MaximumMessageSize": str(properties["MaximumMessageSize"])},
    )["QueueUrl"]
    change = raw_change(3, fullDocument={"_id": 1, "nota": "z" * note_bytes})
    sink = SqsDeadLetterSink(sqs, url, "r1", Stats(), wait=lambda _delay: True)

    # WHEN a change of that size is dead-lettered
    stored = sink.send(
        DeadLetter("e3", "rejected", "InvalidArgument", change, None), should_stop=lambda: False
    )

    # THEN the queue holds its exact raw change, and the readable copy when both fit in 1 MiB
    assert stored
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert len(message["Body"].encode("utf-8")) <= SQS_MAX_MESSAGE_BYTES
    body = json.loads(message["Body"])
    assert base64.b64decode(body["rawEventBson"]) == change.raw
    assert (body["event"] is not None) is readable_copy
