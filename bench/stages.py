"""The relay's pipeline cut after each stage, run beside SecantusDB and the sink like the relay.

Each stage runs the relay's own parts, in one process per run, on the same backlog:
- `read`: the change stream read ahead (`PrefetchedStream`), as the relay opens it;
- `encode`: plus the contract's encoder with the oversize tiers (`ChangeEncoder`);
- `batch`: plus the forwarder (batches of 10, its sender loop, watermark) with a client that
  accepts every entry without any I/O;
- `send`: plus the lean PutEvents client posting to the sink.
The difference between two stages is what the later one adds per change where it really runs (the
isolated figures of `bench/hot_path.py` leave out the shared cores). No checkpoint, lease, metrics
or health file: the full relay's figures show those. Run by `bench.baselines` as the variants
`stage-<name>` (names in `bench.baselines.STAGES`).
"""

import argparse
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from bson import json_util

from bench.baselines import BaselineResult, mark_ready
from bench.memory import own_peak_rss_mib
from relay.deadletter import LoggingDeadLetterSink
from relay.encoder import ChangeEncoder
from relay.forwarder import Forwarder, ForwarderOptions
from relay.prefetch import PrefetchedStream
from relay.putevents import LeanPutEventsClient
from relay.settings import DEFAULT_READ_BATCH_SIZE
from relay.stream import make_client
from relay.telemetry import Stats

# The relay's per-entry limit (EventBridge's 256 KiB); no backlog change comes near it.
MAX_ENTRY_BYTES = 262_144
_POLL_WAIT_MS = 200


class AcceptingClient:
    """Accepts every entry at once: the forwarder without any network. Async, as the lean client
    is, so the forwarder's calls run on its loop as they do in the relay."""

    async def put_events_async(self, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        entries = [{"EventId": f"stage-{number}"} for number in range(len(Entries))]
        return {"FailedEntryCount": 0, "Entries": entries}


def _events_client(stage: str, endpoint: str | None) -> Any:
    if stage != "send":
        return AcceptingClient()
    if not endpoint:
        raise SystemExit("stage send needs --events-endpoint")
    boto_client = boto3.client("events", endpoint_url=endpoint)
    credentials = boto3.Session().get_credentials()
    return LeanPutEventsClient(boto_client, credentials=credentials, timeout_s=10.0)


def run_stage(args: argparse.Namespace) -> BaselineResult:
    """Read `args.events` changes through the relay's parts up to stage `args.variant`."""
    stage = args.variant.removeprefix("stage-")
    stop = threading.Event()
    stats = Stats()
    encoder = ChangeEncoder(
        bus_name=args.bus, source="bench", max_entry_bytes=MAX_ENTRY_BYTES, stats=stats
    )
    forwarder = None
    if stage in ("batch", "send"):
        client = _events_client(stage, args.events_endpoint)
        forwarder = Forwarder(client, LoggingDeadLetterSink(stats), stats, ForwarderOptions())
    mongo = make_client(args.uri)
    collection = mongo[args.database][args.collection]
    result = BaselineResult(args.variant)
    deadline = time.monotonic() + args.max_seconds
    cpu_first = 0.0
    try:
        with (
            mongo.start_session(causal_consistency=False) as session,
            collection.watch(
                full_document=args.full_document,
                start_after=json_util.loads(args.start_after) if args.start_after else None,
                max_await_time_ms=_POLL_WAIT_MS,
                batch_size=DEFAULT_READ_BATCH_SIZE,
                session=session,
            ) as stream,
            PrefetchedStream(stream, session, stop) as prefetched,
        ):
            mark_ready(args.ready_file)
            for chunk in prefetched.chunks():
                if time.monotonic() > deadline:
                    break
                if not chunk.changes:
                    continue
                if result.first_at is None:
                    result.first_at, cpu_first = time.time(), time.process_time()
                for change in chunk.changes:
                    item = encoder.encode(change) if stage != "read" else None
                    if forwarder is not None and item is not None:
                        forwarder.add(item)
                if forwarder is not None and chunk.drained:
                    forwarder.flush()
                result.events += len(chunk.changes)
                if result.events >= args.events:
                    break
            if forwarder is not None and not forwarder.drain(60):
                raise SystemExit("the forwarder did not finish within 60 s")
            result.last_at = time.time()
            stop.set()
    finally:
        if forwarder is not None:
            forwarder.close()
        mongo.close()
    result.cpu_window_s = time.process_time() - cpu_first
    result.peak_rss_mib = own_peak_rss_mib()
    return result
