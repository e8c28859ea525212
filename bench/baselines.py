"""The two baselines the relay is measured against, each run in its own process.

- `raw`: pymongo iterating the change stream as RawBSONDocument, forwarding nothing: the upper
  bound of what any relay in Python can read. The bench gives it the relay's batch size per
  getMore (`--batch-size`), so both read the same batches.
- `naive`: the seed's way: per event, one synchronous PutEvents with one entry encoded with
  `bson.json_util`, then one checkpoint write (DynamoDB PutItem, the relay's store kind).

Each measures itself over the window from its first event to its last (CPU with
`time.process_time`, peak RSS with `getrusage`) and writes one JSON result file.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo import MongoClient

from bench.memory import own_peak_rss_mib
from change_contract import DEFAULT_SOURCE, DETAIL_TYPE_CHANGE
from change_contract.ejson import CODEC_OPTIONS

# The relay's pipeline cut after each stage (bench/stages.py), run as variants `stage-<name>`.
STAGES = ("read", "encode", "batch", "send")

# How long one empty poll of the stream waits, so the deadline is checked while the source idles.
POLL_WAIT_MS = 200


class NaiveForwardError(RuntimeError):
    """PutEvents reported a failed entry: the naive relay stops, as the seed did."""


@dataclass
class BaselineResult:
    variant: str
    events: int = 0
    first_at: float | None = None
    last_at: float | None = None
    cpu_window_s: float = 0.0
    peak_rss_mib: float = 0.0
    event_bytes: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def wall_window_s(self) -> float:
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at


def mark_ready(path: str | None) -> None:
    if path:
        Path(path).write_text("ready")


def _token(text: str | None) -> Any:
    return json_util.loads(text) if text else None


def run_raw(args: argparse.Namespace) -> BaselineResult:
    """Iterate the change stream as raw BSON; optionally note each change's commit latency."""
    client: MongoClient[Any] = MongoClient(args.uri)
    collection = client[args.database].get_collection(args.collection, codec_options=CODEC_OPTIONS)
    result = BaselineResult("raw")
    deadline = time.monotonic() + args.max_seconds
    cpu_first = 0.0
    try:
        with collection.watch(
            full_document=args.full_document,
            start_after=_token(args.start_after),
            max_await_time_ms=POLL_WAIT_MS,
            batch_size=args.batch_size,
        ) as stream:
            mark_ready(args.ready_file)
            while result.events < args.events and time.monotonic() < deadline:
                change = stream.try_next()
                if change is None:
                    continue
                now = time.time()
                if result.first_at is None:
                    result.first_at, cpu_first = now, time.process_time()
                result.events += 1
                result.event_bytes += len(change.raw)
                if args.latency:
                    result.latencies_s.append(now - change["wallTime"].timestamp())
                result.last_at = now
    finally:
        client.close()
    result.cpu_window_s = time.process_time() - cpu_first
    result.peak_rss_mib = own_peak_rss_mib()
    return result


def run_naive(args: argparse.Namespace) -> BaselineResult:
    """One event, one PutEvents with one entry, one checkpoint write: synchronously, in order."""
    import boto3

    events = boto3.client("events", endpoint_url=args.events_endpoint)
    dynamodb = boto3.client("dynamodb", endpoint_url=args.dynamodb_endpoint)
    client: MongoClient[Any] = MongoClient(args.uri)
    collection = client[args.database][args.collection]
    result = BaselineResult("naive")
    deadline = time.monotonic() + args.max_seconds
    cpu_first = 0.0
    try:
        with collection.watch(
            full_document=args.full_document,
            start_after=_token(args.start_after),
            max_await_time_ms=POLL_WAIT_MS,
        ) as stream:
            mark_ready(args.ready_file)
            while result.events < args.events and time.monotonic() < deadline:
                change = stream.try_next()
                if change is None:
                    continue
                if result.first_at is None:
                    result.first_at, cpu_first = time.time(), time.process_time()
                entry: Any = {
                    "Source": DEFAULT_SOURCE,
                    "DetailType": DETAIL_TYPE_CHANGE,
                    "Detail": json_util.dumps(change),
                    "EventBusName": args.bus,
                }
                response = events.put_events(Entries=[entry])
                if response["FailedEntryCount"]:
                    raise NaiveForwardError(f"PutEvents failed: {response['Entries']}")
                checkpoint = {"S": json_util.dumps(change["_id"])}
                dynamodb.put_item(
                    TableName=args.checkpoint_table,
                    Item={"relayId": {"S": args.relay_id}, "resumeToken": checkpoint},
                )
                result.events += 1
                result.last_at = time.time()
    finally:
        client.close()
    result.cpu_window_s = time.process_time() - cpu_first
    result.peak_rss_mib = own_peak_rss_mib()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    stages = [f"stage-{name}" for name in STAGES]
    parser.add_argument("variant", choices=("raw", "naive", *stages))
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--start-after", help="resume token as Extended JSON; default: now")
    parser.add_argument("--events", type=int, required=True, help="stop after this many")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="or after this long")
    parser.add_argument(
        "--full-document",
        default="updateLookup",
        help="as the relay's FULL_DOCUMENT default, so all variants read the same events",
    )
    parser.add_argument("--latency", action="store_true", help="raw: record commit latency")
    parser.add_argument(
        "--batch-size", type=int, help="raw: changes per getMore (default: the server's)"
    )
    parser.add_argument("--ready-file", help="written once the stream is open")
    parser.add_argument("--result-file", required=True)
    parser.add_argument("--events-endpoint", help="naive, stage-send: the PutEvents endpoint")
    parser.add_argument("--dynamodb-endpoint", help="naive: the checkpoint store's endpoint")
    parser.add_argument("--checkpoint-table", default="bench-naive-checkpoints")
    parser.add_argument("--relay-id", default="naive")
    parser.add_argument("--bus", default="bench-bus")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant.startswith("stage-"):
        from bench.stages import run_stage  # the relay's parts: imported only for these runs

        result = run_stage(args)
    else:
        result = run_raw(args) if args.variant == "raw" else run_naive(args)
    payload = {**asdict(result), "wall_window_s": result.wall_window_s, "pid": os.getpid()}
    Path(args.result_file).write_text(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
