"""`make demo`: the whole pipeline on this machine, running the inventory scenario end to end.

Starts the local stand-ins (SecantusDB or `MONGODB_URI`, moto_server), the resources of
`template.yaml`, the relay and the three functions; writes the scenario on `clase.productos`;
prints each stock alert, change notification and audit record as it happens; then a summary.
`--follow` keeps everything running for live changes until Ctrl-C. Everything it starts is
stopped on exit, on Ctrl-C and on failure.
"""

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from localdev.dispatcher import Invocation
from localdev.pipeline import (
    COLLECTION,
    DATABASE,
    LocalPipeline,
    PipelineConfig,
    PipelineError,
    Reaction,
    missing,
    percentile,
    survey,
)
from localdev.scenario import Scenario, build

STEP_DEADLINE_S = 30.0
EMAIL_LINES = 12


class Console:
    """Readable output on the real terminal, one line at a time from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def say(self, text: str = "") -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()


def _clock(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).strftime("%H:%M:%S.%f")[:-3]


def _indent(text: str, prefix: str, limit: int | None = None) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    if limit is not None and len(lines) > limit:
        lines = [*lines[:limit], "..."]
    return [prefix + line for line in lines]


def describe(reaction: Reaction) -> list[str]:
    """A reaction as a person reads it."""
    stamp = _clock(reaction.received_at)
    pad = " " * 15
    if reaction.kind == "alert":
        lines = [f"  {stamp} STOCK ALERT  {reaction.subject or reaction.text}"]
        if reaction.sms:
            lines.append(f"{pad}  sms:   {reaction.sms}")
        if reaction.email:
            lines += _indent(reaction.email, f"{pad}  email: ", EMAIL_LINES)[:1]
            lines += _indent(reaction.email, f"{pad}         ", EMAIL_LINES)[1:]
        if not reaction.sms and not reaction.email:
            lines += _indent(reaction.text, f"{pad}  text:  ")
        return lines
    if reaction.kind == "notification":
        lines = [f"  {stamp} CHANGE       {reaction.subject or ''}".rstrip()]
        # The email text is the one written for people; `default` may be JSON for machines.
        return lines + _indent(reaction.email or reaction.text, f"{pad}  ", EMAIL_LINES)
    if reaction.kind == "operations":
        lines = [f"  {stamp} OPERATIONS   {reaction.subject or ''}".rstrip()]
        return lines + _indent(reaction.email or reaction.text, f"{pad}  ", EMAIL_LINES)
    record = reaction.record
    what = str(record.get("operationType", "?"))
    fields = record.get("changedFields") or []
    document = record.get("fullDocument") or record.get("fullDocumentBeforeChange") or {}
    name = document.get("nombreProducto") if isinstance(document, Mapping) else None
    key = record.get("documentKey", {})
    target = name or (key.get("_id") if isinstance(key, Mapping) else key)
    when = record.get("wallTime")
    when_text = when.strftime("%H:%M:%S.%f")[:-3] if isinstance(when, dt.datetime) else str(when)
    changed = f" fields: {', '.join(map(str, fields))}" if fields else ""
    who = record.get("actor", "unknown")
    return [f"  {stamp} AUDIT        {when_text} {who} {what} {target}{changed}"]


def _summary_lines(pipeline: LocalPipeline) -> list[str]:
    collector, dispatcher = pipeline.collector, pipeline.dispatcher
    if collector is None or dispatcher is None:
        return ["  (no reactions: the pipeline is incomplete)"]
    invocations = list(dispatcher.invocations)
    duplicates = sum(1 for call in invocations if call.duplicate and call.ok)
    dead = sum(1 for call in invocations if call.dead_lettered)
    first: dict[tuple[str, str | None], Invocation] = {}
    for call in invocations:
        if call.ok and not call.duplicate:
            first.setdefault((call.function, call.event_id), call)
    latencies = [call.latency_s for call in first.values() if call.latency_s is not None]
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    latency = (
        "n/a"
        if p50 is None or p95 is None
        else f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms over {len(latencies)} calls"
    )
    return [
        f"  events forwarded to the bus   {collector.bus.forwarded}"
        + (f" ({collector.bus.resent} re-sent)" if collector.bus.resent else ""),
        f"  stock alerts                  {len(collector.of_kind('alert'))}",
        f"  change notifications          {len(collector.of_kind('notification'))}",
        f"  audit records                 {len(collector.of_kind('audit'))}",
        f"  duplicates suppressed         {duplicates} (re-deliveries absorbed by idempotency)",
        f"  dead-lettered events          {dead}",
        f"  end-to-end latency            {latency} (commit in MongoDB -> function done)",
    ]


def _expected_counts(scenario: Scenario, upto: int) -> dict[str, int]:
    steps = scenario.steps[: upto + 1]
    return {
        "alert": sum(len(step.alerts) for step in steps),
        "notification": sum(len(step.notifications) for step in steps),
        "audit": sum(len(step.audits) for step in steps),
    }


def _awaited_kinds(pipeline: LocalPipeline) -> list[str]:
    """The reactions this run can produce: those whose function exists (with relay, template)."""
    if not (pipeline.built("template model") and pipeline.built("relay")):
        return []
    kinds = []
    for kind, function in (
        ("alert", "StockAlertFunction"),
        ("notification", "UpdateNotifierFunction"),
        ("audit", "AuditWriterFunction"),
    ):
        if pipeline.built(function):
            kinds.append(kind)
    return kinds


def run_scenario(pipeline: LocalPipeline, scenario: Scenario, console: Console) -> None:
    """Write each step, then wait until the reactions it causes have all arrived."""
    assert pipeline.mongo is not None
    collection = pipeline.mongo[DATABASE][COLLECTION]
    kinds = _awaited_kinds(pipeline)
    for index, step in enumerate(scenario.steps, start=1):
        console.say()
        console.say(f"[{index}/{len(scenario.steps)}] {step.say}")
        step.write(collection)
        collector = pipeline.collector
        if collector is None or not kinds:
            continue
        expected = _expected_counts(scenario, index - 1)

        def arrived(expected: dict[str, int] = expected, seen: Any = collector) -> bool:
            return all(len(seen.of_kind(kind)) >= expected[kind] for kind in kinds)

        try:
            pipeline.wait_for(
                arrived, deadline_s=STEP_DEADLINE_S, what=f"reactions of step {index}"
            )
        except TimeoutError as error:
            counts = {kind: len(collector.of_kind(kind)) for kind in kinds}
            wanted = {kind: expected[kind] for kind in kinds}
            raise TimeoutError(f"{error}: have {counts}, expected {wanted}") from error


@contextlib.contextmanager
def _stdout_to(log: IO[str]) -> Iterator[IO[str]]:
    """Send what the in-process functions print (JSON logs, EMF metrics) to a log file, and give
    back the terminal for the demo's own output."""
    terminal = sys.stdout
    sys.stdout = log
    try:
        yield terminal
    finally:
        sys.stdout = terminal


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_header(console: Console, pieces: Sequence[Any], follow: bool) -> None:
    mongo = os.environ.get("MONGODB_URI")
    console.say("mongo-change-reactions: the whole pipeline on this machine")
    console.say()
    console.say("local stand-ins (development only):")
    if mongo:
        console.say("  MongoDB  your deployment in MONGODB_URI (not a stand-in)")
    else:
        console.say("  MongoDB  SecantusDB, a MongoDB-compatible server, temporary in-memory store")
    console.say("  AWS      moto_server: EventBridge bus and rules, SQS, SNS, DynamoDB")
    console.say("  Lambda   a local dispatcher calling each handler in this process")
    console.say(
        "           (rule target -> SQS queue -> handler; retries, then the on-failure queue)"
    )
    console.say("  email/SMS  an SQS inbox subscribed to each SNS topic")
    console.say("production code (as deployed):")
    for piece in pieces:
        if piece.production:
            console.say(f"  {piece.name:<24} {piece.path:<34} {piece.status}")
    console.say("  routing                  template.yaml (bus, rules, patterns, topics, tables)")
    gaps = missing(pieces)
    if gaps:
        console.say()
        for piece in gaps:
            console.say(f"NOT BUILT YET: {piece.name} ({piece.path}); running what exists.")
    if follow:
        console.say("(--follow: keeps running after the scenario until Ctrl-C)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--follow", action="store_true", help="keep running after the scenario, until Ctrl-C"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="INFO logs from the functions (in the log file)"
    )
    args = parser.parse_args(argv)

    pieces = survey()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the whole run
        "w", prefix="mcr-demo-", suffix=".log", delete=False, encoding="utf-8"
    )
    logging.basicConfig(
        stream=log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C must stop the run even when started from a shell that ignores SIGINT in the
    # background (Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with _stdout_to(log) as terminal:
        console = Console(terminal)
        _print_header(console, pieces, args.follow)
        code = _run(console, args.follow, args.verbose, Path(log.name))
    log.close()
    return code


def _printer(console: Console) -> Callable[[Reaction], None]:
    def show(reaction: Reaction) -> None:
        for line in describe(reaction):
            console.say(line)

    return show


def _run(console: Console, follow: bool, verbose: bool, log_path: Path) -> int:
    config = PipelineConfig(
        mongodb_uri=os.environ.get("MONGODB_URI") or None,
        function_log_level="INFO" if verbose else "WARNING",
    )
    pipeline = LocalPipeline(
        config, on_reaction=_printer(console), progress=lambda text: console.say(f"  {text}")
    )
    console.say()
    console.say("starting:")
    try:
        pipeline.start()
        scenario = build()
        run_scenario(pipeline, scenario, console)
        console.say()
        console.say("summary:")
        for line in _summary_lines(pipeline):
            console.say(line)
        if missing(pipeline.pieces):
            names = ", ".join(piece.name for piece in missing(pipeline.pieces))
            console.say(f"  incomplete run: not built yet: {names}")
        if follow:
            _follow(pipeline, console)
        return 0
    except PipelineError as error:
        console.say()
        console.say(f"FAILED: {error}")
        return 1
    except TimeoutError as error:
        console.say()
        console.say(f"FAILED: {error}")
        tail = pipeline.relay_output(20)
        if tail:
            console.say("relay output (last lines):")
            console.say(tail)
        console.say(f"function logs: {log_path}")
        return 1
    except KeyboardInterrupt:
        console.say()
        console.say("interrupted")
        return 0 if follow else 130
    finally:
        console.say()
        console.say("stopping everything ...")
        pipeline.stop()
        console.say(f"stopped; function logs were written to {log_path}")


def _follow(pipeline: LocalPipeline, console: Console) -> None:
    console.say()
    console.say("following live changes. Connect and change products, e.g.:")
    console.say(f"  mongosh '{pipeline.mongo_uri}'")
    console.say(
        f'  python -c "from pymongo import MongoClient; '
        f"MongoClient('{pipeline.mongo_uri}').{DATABASE}.{COLLECTION}"
        f".update_one({{'nombreProducto': 'Pan de molde'}}, {{'$set': {{'cantidad': 3}}}})\""
    )
    console.say("Ctrl-C stops everything.")
    forever = threading.Event()
    while not forever.wait(1.0):
        if pipeline.relay is not None and not pipeline.relay.running:
            raise PipelineError("relay", f"exited:\n{pipeline.relay_output()}")


if __name__ == "__main__":
    sys.exit(main())
