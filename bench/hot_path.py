"""The relay's per-change steps in isolation, each beside the library way it replaced.

Runs in this process on generated product changes, with no server: rendering the detail (the
relay's C renderer fastejson; the contract's orjson path, which it replaced and which still takes
what fastejson leaves; and `bson.json_util`), signing a PutEvents request (the lean SigV4
signer, and botocore's `SigV4Auth`) and serialising its body (orjson, and `json`). Figures are CPU
microseconds per change (a request carries 10), the best of a few rounds, garbage collector on.
The relay's end-to-end figures in the same run show what the same steps cost beside SecantusDB
and the sink on shared cores. Never opens a socket.
"""

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from bson import Decimal128, Timestamp, encode
from bson.raw_bson import RawBSONDocument

from bench.writer import product
from change_contract import ejson, encode_change
from change_contract.ejson import CODEC_OPTIONS
from relay.putevents import CONTENT_TYPE, TARGET, SigV4Signer, _entry_json, request_body

ENTRIES_PER_REQUEST = 10
_CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token")
_HOST = "events.us-east-1.amazonaws.com"


@dataclass(frozen=True)
class HotPathStep:
    step: str
    relay: str
    relay_us: float
    baseline: str
    baseline_us: float

    @property
    def speedup(self) -> float:
        return self.baseline_us / self.relay_us if self.relay_us else 0.0


def sample_changes(count: int, *, update_share: float = 0.25, seed: int = 7) -> list[Any]:
    """Change events shaped as the relay reads them (RawBSONDocument): inserts and updates."""
    rng = random.Random(seed)
    changes = []
    for number in range(count):
        document = product(rng, number)
        wall = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC) + dt.timedelta(milliseconds=number)
        change: dict[str, Any] = {
            "_id": {"_data": f"8267{number:028X}"},
            "operationType": "insert",
            "clusterTime": Timestamp(1_796_300_000 + number // 1000, number % 1000 + 1),
            "wallTime": wall,
            "fullDocument": document,
            "ns": {"db": "clase", "coll": "productos"},
            "documentKey": {"_id": document["_id"]},
        }
        if rng.random() < update_share:
            fields = {"cantidad": rng.randint(0, 200), "updatedAt": wall}
            if rng.random() < 0.2:
                fields["precio"] = Decimal128(f"{rng.randint(50, 9999) / 100:.2f}")
            change["operationType"] = "update"
            change["updateDescription"] = {
                "updatedFields": fields,
                "removedFields": [],
                "truncatedArrays": [],
            }
            change["fullDocument"] = {**document, **fields}
        changes.append(RawBSONDocument(encode(change, codec_options=CODEC_OPTIONS), CODEC_OPTIONS))
    return changes


def cpu_us_per_item(action: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    """Best-of-`rounds` process CPU microseconds per item of `action` over `items`."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for item in items:
            action(item)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def _botocore_headers(body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=f"https://{_HOST}/",
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
    )
    SigV4Auth(_CREDENTIALS.get_frozen_credentials(), "events", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _json_body(entries: Sequence[Any]) -> bytes:
    return json.dumps({"Entries": [_entry_json(entry) for entry in entries]}).encode("utf-8")


def measure_hot_path(changes: int = 2_000, rounds: int = 3) -> list[HotPathStep]:
    """Measure each step on `changes` generated changes; per-request steps count per change."""
    raw = sample_changes(changes)
    entries = [encode_change(change, bus_name="bench-bus").entry for change in raw]
    requests = [
        entries[start : start + ENTRIES_PER_REQUEST]
        for start in range(0, len(entries), ENTRIES_PER_REQUEST)
    ]
    bodies = [request_body(request) for request in requests]
    signer = SigV4Signer(service="events", region="us-east-1", host=_HOST, path="/")
    frozen = _CREDENTIALS.get_frozen_credentials()
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
    per_change = len(raw) / len(requests)

    def per_request(action: Callable[[Any], object], items: Sequence[Any]) -> float:
        return cpu_us_per_item(action, items, rounds) / per_change

    def fast(change: Any) -> object:
        return encode_change(change, fast=True)

    native_us = cpu_us_per_item(fast, raw, rounds)
    # The contract's orjson path: where fastejson is not installed or falls back.
    with mock.patch.object(ejson, "_NATIVE", None):
        orjson_us = cpu_us_per_item(fast, raw, rounds)
    return [
        HotPathStep(
            "render the detail (encode_change)",
            "fastejson from the BSON bytes",
            native_us,
            "pymongo decode + orjson",
            orjson_us,
        ),
        HotPathStep(
            "render the detail, where fastejson falls back",
            "pymongo decode + orjson",
            orjson_us,
            "bson.json_util",
            cpu_us_per_item(lambda change: encode_change(change, fast=False), raw, rounds),
        ),
        HotPathStep(
            "sign the request (SigV4)",
            "lean signer, daily key kept",
            per_request(
                lambda body: signer.headers(body, headers, frozen, now=time.time()), bodies
            ),
            "botocore SigV4Auth",
            per_request(_botocore_headers, bodies),
        ),
        HotPathStep(
            "serialise the request body",
            "orjson",
            per_request(request_body, requests),
            "json",
            per_request(_json_body, requests),
        ),
    ]


def hot_path_table(steps: Sequence[HotPathStep]) -> str:
    lines = [
        "| step | relay | CPU µs/change | replaced | CPU µs/change | speed-up |",
        "|---|---|---:|---|---:|---:|",
    ]
    for step in steps:
        lines.append(
            f"| {step.step} | {step.relay} | {step.relay_us:.1f} | {step.baseline} | "
            f"{step.baseline_us:.1f} | {step.speedup:.1f}x |"
        )
    return "\n".join(lines)
