"""Change -> `Item`: the contract's encoder plus the oversize tiers. The per-event hot path.

An entry over the request limit is shrunk in tiers: drop `fullDocumentBeforeChange`, then also
`fullDocument` (keeping `updateDescription`), then store the whole detail in S3 and send a pointer.
A change the contract cannot encode becomes an item marked bad, dead-lettered in order.
Never raises for a bad change: the stream must go on.
"""

import hashlib
import threading
from collections.abc import Mapping
from typing import Any, Final

from change_contract import ContractError, PayloadRef, encode_change
from change_contract.encode import EncodedChange, event_id_of
from relay.backoff import RetryStoppedError, retry_until_stored
from relay.forwarder import Item
from relay.telemetry import Stats, logger

_TIERS: Final = (
    ("fullDocumentBeforeChange",),
    ("fullDocumentBeforeChange", "fullDocument"),
)


class OffloadInterruptedError(RuntimeError):
    """The relay was told to stop while an oversize payload was still being stored."""


class ChangeEncoder:
    """Encodes changes for one bus and source, shrinking or offloading those too large."""

    def __init__(
        self,
        *,
        bus_name: str,
        source: str,
        max_entry_bytes: int,
        stats: Stats,
        s3: Any = None,
        bucket: str | None = None,
        prefix: str = "relay-oversize/",
        relay_id: str = "relay",
        stop: threading.Event | None = None,
    ) -> None:
        self._bus_name = bus_name
        self._source = source
        self._max = max_entry_bytes
        self._stats = stats
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._relay_id = relay_id
        self._stop = stop or threading.Event()

    def encode(self, change: Mapping[str, Any]) -> Item:
        try:
            encoded = encode_change(change, bus_name=self._bus_name, source=self._source)
            if encoded.size > self._max:
                encoded = self._shrink(change, encoded)
        except ContractError as error:
            return self._bad(change, error)
        operation = encoded.operation_type
        return Item(
            entry=encoded.entry,
            size=encoded.size,
            event_id=encoded.event_id,
            token=encoded.resume_token,
            cluster_time=encoded.cluster_time,
            change=change,
            start_after=operation == "invalidate",
        )

    def _bad(self, change: Mapping[str, Any], error: ContractError) -> Item:
        token = change.get("_id") if isinstance(change, Mapping) else None
        event_id = error.event_id
        if event_id is None:
            try:
                event_id = event_id_of(token)
            except ContractError:
                event_id = "unknown"
        cluster_time = change.get("clusterTime") if isinstance(change, Mapping) else None
        logger.error("change cannot be encoded", event_id=event_id, reason=error.reason)
        return Item(
            entry=None,
            size=0,
            event_id=event_id,
            token=token if isinstance(token, Mapping) else None,
            cluster_time=cluster_time if hasattr(cluster_time, "inc") else None,
            change=change,
            error=str(error),
        )

    def _shrink(self, change: Mapping[str, Any], full: EncodedChange) -> EncodedChange:
        for omit in _TIERS:
            smaller = encode_change(change, bus_name=self._bus_name, source=self._source, omit=omit)
            if smaller.size <= self._max:
                self._stats.add("OversizeShrunk")
                logger.info(
                    "oversize change shrunk",
                    event_id=full.event_id,
                    bytes=full.size,
                    shrunk_bytes=smaller.size,
                    omitted=list(omit),
                )
                return smaller
        if self._s3 is None or not self._bucket:
            raise ContractError(
                f"entry is {full.size} bytes, over the limit of {self._max}, even without "
                "document content, and OVERSIZE_BUCKET is not set",
                event_id=full.event_id,
            )
        ref = self._offload(full)
        pointer = encode_change(
            change, bus_name=self._bus_name, source=self._source, payload_ref=ref
        )
        if pointer.size > self._max:
            raise ContractError(
                f"even the S3 pointer is {pointer.size} bytes, over the limit of {self._max}",
                event_id=full.event_id,
            )
        self._stats.add("OversizeOffloaded")
        logger.info(
            "oversize change offloaded",
            event_id=full.event_id,
            bytes=full.size,
            bucket=ref.bucket,
            key=ref.key,
        )
        return pointer

    def _offload(self, full: EncodedChange) -> PayloadRef:
        digest = hashlib.sha256(full.event_id.encode("utf-8")).hexdigest()
        ref = PayloadRef(self._bucket or "", f"{self._prefix}{self._relay_id}/{digest}.json")
        try:
            # The change cannot go on without its payload stored: retry, as for PutEvents.
            retry_until_stored(
                lambda: self._s3.put_object(
                    Bucket=ref.bucket,
                    Key=ref.key,
                    Body=full.entry["Detail"].encode("utf-8"),
                    ContentType="application/json",
                ),
                failure_message="oversize payload upload failed, retrying",
                log_fields={"event_id": full.event_id},
                stats=self._stats,
                wait=self._stop.wait,
            )
        except RetryStoppedError as stopped:
            raise OffloadInterruptedError(full.event_id) from stopped.last_error
        return ref
