"""Dead letters: changes EventBridge rejected for good, or that the contract cannot encode.

Each dead letter keeps the raw change (BSON, base64) so nothing is lost, plus the id and the reason.
The SQS sink retries until SQS accepts (the checkpoint cannot pass a letter not yet stored); the
logging sink is what runs when no queue is configured: it logs ids and reasons, never the body.
"""

import base64
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bson import Timestamp, json_util
from bson.errors import BSONError
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument

from relay.backoff import RetryStoppedError, retry_until_stored
from relay.telemetry import Stats, logger

# SQS accepts messages up to 1 MiB (it was 256 KiB) where the queue's MaximumMessageSize allows
# it: template.yaml sets it on the relay's queue. A larger letter drops its readable copy and, when
# an oversize bucket is configured, keeps its raw change in S3; only with no bucket, and a raw
# change too large on its own, is the raw change left out (logged as an error).
SQS_MAX_MESSAGE_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event_id: str
    reason: str
    error_code: str
    change: Mapping[str, Any] | None
    cluster_time: Timestamp | None

    def raw_bson(self) -> bytes | None:
        if isinstance(self.change, RawBSONDocument):
            return bytes(self.change.raw)
        if self.change is None:
            return None
        try:
            import bson

            return bson.encode(self.change)
        except (BSONError, TypeError, ValueError) as error:
            logger.warning("dead letter change not encodable as bson", error=str(error))
            return None


class DeadLetterSink(Protocol):
    def send(self, letter: DeadLetter, *, should_stop: Callable[[], bool]) -> bool:
        """Store the letter; True once stored, False if told to stop before it was."""
        ...

    def describe(self) -> str: ...


def _readable(change: Mapping[str, Any] | None) -> str | None:
    """Canonical Extended JSON of the change, or None when it cannot be rendered (bad input)."""
    if change is None:
        return None
    try:
        return json_util.dumps(change, json_options=CANONICAL_JSON_OPTIONS)
    except (BSONError, UnicodeError, TypeError, ValueError, OverflowError):
        # The raw BSON (always present) carries it; this copy is only for reading.
        return None


def letter_body(letter: DeadLetter, relay_id: str) -> dict[str, Any]:
    raw = letter.raw_bson()
    ct = letter.cluster_time
    return {
        "relayId": relay_id,
        "eventId": letter.event_id,
        "errorCode": letter.error_code,
        "reason": letter.reason,
        "clusterTime": None if ct is None else {"t": ct.time, "i": ct.inc},
        "deadLetteredAt": dt.datetime.now(dt.UTC).isoformat(),
        "rawEventBson": None if raw is None else base64.b64encode(raw).decode("ascii"),
        "event": _readable(letter.change),
    }


class LoggingDeadLetterSink:
    """No queue configured: the failure is logged (ids, reason) and counted; the relay goes on."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def describe(self) -> str:
        return "log only (DLQ_QUEUE_URL not set)"

    def send(self, letter: DeadLetter, *, should_stop: Callable[[], bool]) -> bool:
        logger.error(
            "change not forwarded and no dead-letter queue configured",
            event_id=letter.event_id,
            error_code=letter.error_code,
            reason=letter.reason,
        )
        return True


class SqsDeadLetterSink:
    """Sends each letter to an SQS queue, retrying with capped backoff until it is stored."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        relay_id: str,
        stats: Stats,
        *,
        s3: Any = None,
        bucket: str | None = None,
        prefix: str = "relay-oversize/",
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._relay_id = relay_id
        self._stats = stats
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._wait = wait or threading.Event().wait
        self._limit: int | None = None

    def describe(self) -> str:
        return self._queue_url

    def _message_limit(self) -> int:
        """The queue's own MaximumMessageSize (read once), never above what SQS accepts."""
        # A queue made outside the stack may still be capped at 256 KiB: a letter over its cap
        # would be rejected on every retry, so the letter is fitted to the queue, not to SQS.
        if self._limit is None:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["MaximumMessageSize"]
            )["Attributes"]
            queue_max = int(attributes.get("MaximumMessageSize", SQS_MAX_MESSAGE_BYTES))
            self._limit = min(queue_max, SQS_MAX_MESSAGE_BYTES)
        return self._limit

    def _fit(self, body: dict[str, Any]) -> str:
        limit = self._message_limit()
        text = json.dumps(body)
        if len(text.encode("utf-8")) <= limit:
            return text
        body = {**body, "event": None}
        if self._s3 is not None and self._bucket and body["rawEventBson"] is not None:
            raw = base64.b64decode(body["rawEventBson"])
            digest = hashlib.sha256(body["eventId"].encode("utf-8")).hexdigest()
            key = f"{self._prefix}{self._relay_id}/dead-letters/{digest}.bson"
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=raw)
            body = {
                **body,
                "rawEventBson": None,
                "rawEventRef": {"bucket": self._bucket, "key": key},
            }
        text = json.dumps(body)
        if len(text.encode("utf-8")) > limit:
            logger.error(
                "dead letter too large for sqs, raw change left out",
                event_id=body["eventId"],
                bytes=len(text),
                limit_bytes=limit,
            )
            text = json.dumps({**body, "rawEventBson": None, "rawEventOmitted": True})
        return text

    def send(self, letter: DeadLetter, *, should_stop: Callable[[], bool]) -> bool:
        body = letter_body(letter, self._relay_id)
        try:
            retry_until_stored(
                lambda: self._sqs.send_message(
                    QueueUrl=self._queue_url, MessageBody=self._fit(body)
                ),
                failure_message="dead-letter send failed, retrying",
                log_fields={"event_id": letter.event_id},
                stats=self._stats,
                wait=lambda delay: should_stop() or self._wait(delay),
            )
        except RetryStoppedError:
            # Each failure is already logged; False tells the caller the letter is not stored.
            return False
        logger.warning(
            "change dead-lettered",
            event_id=letter.event_id,
            error_code=letter.error_code,
            reason=letter.reason,
        )
        self._stats.add("DeadLettered")
        return True
