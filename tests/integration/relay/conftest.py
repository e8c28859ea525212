"""The relay's integration world: a bus routed to an SQS queue on moto_server, tables, a DLQ.

moto cannot deliver to Lambda, so a rule on the bus sends every change event to an SQS queue, and
the tests read what reached the bus from there (the full EventBridge envelope).
"""

import json
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from localdev.servers import ManagedProcess, wait_until
from relay.service import Relay
from relay.settings import RelaySettings

SOURCE = "test.relay"


@dataclass
class AwsWorld:
    """Resources the relay writes to, with helpers to read what arrived."""

    endpoint: str
    bus: str
    table: str
    sink_url: str
    dlq_url: str
    bucket: str
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # eventId -> envelopes

    def client(self, service: Any) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")

    def collect(self, *, wait_s: float = 0.0) -> list[dict[str, Any]]:
        """Read every message now in the sink queue; returns the new envelopes."""
        sqs = self.client("sqs")
        new: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.sink_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=900,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                envelope = json.loads(message["Body"])
                self.seen.setdefault(envelope["detail"]["eventId"], []).append(envelope)
                new.append(envelope)
            # Deleted once read: moto scans the whole queue on every receive.
            sqs.delete_message_batch(
                QueueUrl=self.sink_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )
        return new

    def wait_for(self, predicate: Any, *, deadline_s: float = 60, what: str) -> None:
        def check() -> bool:
            self.collect()
            return bool(predicate())

        wait_until(check, deadline_s=deadline_s, what=what)

    def details(self) -> list[dict[str, Any]]:
        return [envelopes[0]["detail"] for envelopes in self.seen.values()]

    def inserted_numbers(self) -> list[int]:
        """`n` of every distinct insert that reached the bus."""
        return [
            detail["fullDocument"]["n"]
            for detail in self.details()
            if detail.get("operationType") == "insert" and "n" in (detail.get("fullDocument") or {})
        ]

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        letters: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=900
            ).get("Messages", [])
            if not messages:
                return letters
            letters += [json.loads(message["Body"]) for message in messages]

    def checkpoint(self, relay_id: str) -> dict[str, Any] | None:
        item = self.client("dynamodb").get_item(
            TableName=self.table, Key={"relayId": {"S": relay_id}}, ConsistentRead=True
        )
        found: dict[str, Any] | None = item.get("Item")
        return found


@pytest.fixture
def world(aws_endpoint: str) -> AwsWorld:
    suffix = uuid.uuid4().hex[:8]
    events = boto3.client("events", endpoint_url=aws_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    bus = f"changes-{suffix}"
    events.create_event_bus(Name=bus)
    sink_url = sqs.create_queue(QueueName=f"sink-{suffix}")["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="everything", EventBusName=bus, EventPattern=json.dumps({"source": [SOURCE]})
    )
    events.put_targets(
        Rule="everything", EventBusName=bus, Targets=[{"Id": "sink", "Arn": sink_arn}]
    )
    table = f"checkpoints-{suffix}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "relayId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "relayId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dlq_url = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    bucket = f"oversize-{suffix}"
    s3.create_bucket(Bucket=bucket)
    return AwsWorld(aws_endpoint, bus, table, sink_url, dlq_url, bucket)


def relay_env(
    world: AwsWorld, uri: str, database: str, collections: str = "productos", **extra: str
) -> dict[str, str]:
    """The environment a relay process gets: the required variables plus fast test timings."""
    env = {
        "MONGODB_URI": uri,
        "WATCH_DATABASE": database,
        "WATCH_COLLECTIONS": collections,
        "EVENT_BUS_NAME": world.bus,
        "EVENT_SOURCE": SOURCE,
        "CHECKPOINT_TABLE": world.table,
        "RELAY_ID": f"relay-{database}",
        "DLQ_QUEUE_URL": world.dlq_url,
        "MAX_AWAIT_TIME_MS": "200",
        "CHECKPOINT_INTERVAL_SECONDS": "0.2",
        "METRICS_INTERVAL_SECONDS": "1",
        "RETRY_BASE_SECONDS": "0.02",
        "RETRY_MAX_SECONDS": "0.5",
        "STOP_DEADLINE_SECONDS": "15",
        # moto delivers to SQS at ~12 ms per event, far slower on a loaded machine: no timeouts
        # unless a test asks for them.
        "PUT_EVENTS_TIMEOUT_SECONDS": "60",
        "HEALTH_FILE": f"/tmp/relay-health-{database}.json",
        "AWS_ENDPOINT_URL": world.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.update(extra)
    return env


class RelayThread:
    """A relay run in-process on a thread, for tests that need its counters."""

    def __init__(self, env: dict[str, str], **clients: Any) -> None:
        self.relay = Relay(RelaySettings.from_env(env), **clients)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.relay.run()

    def __enter__(self) -> "RelayThread":
        self._thread.start()
        wait_until(
            lambda: self.relay.state in {"streaming", "standby"} or not self._thread.is_alive(),
            deadline_s=20,
            what="relay streaming",
        )
        return self

    def stop(self) -> int | None:
        self.relay.stop()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "relay did not stop within 30 s"
        return self.exit_code

    def wait_exit(self, deadline_s: float = 30) -> int | None:
        self._thread.join(timeout=deadline_s)
        return self.exit_code

    def __exit__(self, *_exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


@pytest.fixture
def relay_thread() -> type[RelayThread]:
    return RelayThread


def relay_process(env: dict[str, str], name: str = "relay") -> ManagedProcess:
    """`python -m relay run` as a child process in its own group (stopped by the caller)."""
    # Unbuffered, as in the image: a test reading the log sees every line already written.
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", **env}
    return ManagedProcess(name, [sys.executable, "-m", "relay", "run"], env=full_env)


def wait_streaming(process: ManagedProcess, deadline_s: float = 30) -> None:
    """Until the relay logged that its change stream is open (or it exited)."""

    def opened() -> bool:
        if not process.running:
            raise AssertionError(f"relay exited early:\n{process.output_tail(40)}")
        return "change stream open" in (process.log_path.read_text() if process.log_path else "")

    wait_until(opened, deadline_s=deadline_s, what="relay change stream open")
