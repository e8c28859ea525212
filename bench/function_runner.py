"""Run one Lambda handler in this (fresh) process: time its import, first call and warm calls.

`python -m bench.function_runner --app PATH --event FILE --invocations N --result-file OUT`.
Every invocation gets its own event id and document id, so idempotency and per-product state
never turn a warm call into a cached no-op. Writes one JSON result; a handler error fails the run.
"""

import argparse
import copy
import importlib.util
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bson import ObjectId

from bench.memory import own_peak_rss_mib


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name: str = "bench-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench-function"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/bench-function"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_app(path: Path) -> ModuleType:
    """Import a handler module from its file, its folder first on the path (as in Lambda)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_app_{path.parent.name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variant_of(event: dict[str, Any], number: int) -> dict[str, Any]:
    """A copy of `event` about another document, with its own event id."""
    varied = copy.deepcopy(event)
    varied["id"] = str(uuid.uuid4())
    detail = varied["detail"]
    detail["eventId"] = f"{detail['eventId']}-bench-{number}"
    document_id = {"$oid": str(ObjectId())}
    if isinstance(detail.get("documentKey"), dict):
        detail["documentKey"]["_id"] = document_id
    for field in ("fullDocument", "fullDocumentBeforeChange"):
        if isinstance(detail.get(field), dict):
            detail[field]["_id"] = document_id
    return varied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", type=Path, required=True, help="the handler module's file")
    parser.add_argument("--event", type=Path, required=True, help="a sample event (JSON)")
    parser.add_argument("--invocations", type=int, required=True, help="warm calls")
    parser.add_argument("--result-file", type=Path, required=True)
    args = parser.parse_args(argv)

    base_event = json.loads(args.event.read_text())
    events = [variant_of(base_event, number) for number in range(args.invocations + 1)]
    context = FakeLambdaContext()

    # Cold start: import, with whatever clients the module creates at import time.
    started = time.perf_counter()
    module = load_app(args.app)
    init_s = time.perf_counter() - started

    # The first call pays for anything created lazily; the warm calls follow.
    started = time.perf_counter()
    module.handler(events[0], context)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    for event in events[1:]:
        module.handler(event, context)
    warm_s = time.perf_counter() - started

    result = {
        "init_ms": init_s * 1000,
        "first_call_ms": first_s * 1000,
        "warm_ms_per_event": warm_s * 1000 / max(1, args.invocations),
        "invocations": args.invocations,
        "peak_rss_mib": own_peak_rss_mib(),
    }
    args.result_file.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
