"""The relay benchmark: raw read, naive relay and the relay, on one backlog, per sink latency.

Every variant runs in its own process and reads the same backlog of changes, written beforehand
by the writer process so the source is never the bottleneck of a throughput figure. Latency is
measured separately, with the writer paced below every variant's capacity but the naive's.
Starts and stops its own SecantusDB (unless MONGODB_URI is set), moto_server and sink.
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from bson import json_util
from pymongo import MongoClient
from pymongo.collection import Collection

from bench.baselines import STAGES
from bench.figures import (
    TARGET_CPU_US,
    TARGET_NAIVE_RATIO,
    TARGET_RAW_RATIO,
    RelayRun,
    StageRun,
)
from bench.memory import process_peak_rss_mib
from bench.profiling import ProfilerError, start_profiler, stop_profiler, summarise
from bench.sink import RunningSink, SinkClient, start_sink
from localdev.servers import ManagedProcess, MotoServer, running_moto, running_secantus, wait_until
from relay.settings import DEFAULT_READ_BATCH_SIZE

COLLECTION = "productos"
# The baselines' latency runs write here, outside the relay's watch, so the relay's stream holds
# only the backlog and its own latency run.
LIVE_COLLECTION = "productos_live"
RELAY_TABLE = "bench-relay-checkpoints"
NAIVE_TABLE = "bench-naive-checkpoints"
RELAY_ID = "bench-relay"
BUS_NAME = "bench-bus"
PROBE_EVERY_S = 0.5


class BenchSetupError(RuntimeError):
    """A part of the benchmark could not be set up; the message says which and why."""


@dataclass
class RelayBenchConfig:
    events: int = 20_000
    sink_latencies_ms: tuple[float, ...] = (0.0, 25.0)
    naive_seconds: float = 8.0
    live_rate: float = 200.0
    live_seconds: float = 4.0
    update_share: float = 0.25
    profile: bool = True
    results_dir: Path = Path("bench/results")
    run_deadline_s: float = 180.0
    # Passes of the relay over the backlog per sink latency, each followed by a raw read.
    rounds: int = 3

    @property
    def live_changes(self) -> int:
        return max(1, int(self.live_rate * self.live_seconds))


@dataclass
class Stage:
    """The servers of one benchmark run and the database holding its backlog."""

    mongo_uri: str
    server_label: str
    moto: MotoServer
    sink: SinkClient
    database: str
    workdir: Path
    start_token: str = ""
    mean_event_bytes: float | None = None
    relay_checkpoint: list[dict[str, Any]] = field(default_factory=list)

    def collection(self, client: MongoClient[Any]) -> Collection[Any]:
        return client[self.database][COLLECTION]


def relay_available() -> bool:
    """Whether `python -m relay run` exists in this checkout."""
    try:
        return importlib.util.find_spec("relay.__main__") is not None
    except ImportError:
        return False


def _aws_env(endpoint: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    return env


def _create_tables(moto: MotoServer) -> None:
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for table in (RELAY_TABLE, NAIVE_TABLE):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "relayId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "relayId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def _dynamodb(stage: Stage) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=stage.moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@contextlib.contextmanager
def staged(config: RelayBenchConfig) -> Iterator[Stage]:
    """Start the servers (MongoDB unless MONGODB_URI is set, moto_server, the sink)."""
    with contextlib.ExitStack() as stack:
        uri = os.environ.get("MONGODB_URI")
        label = "MongoDB at MONGODB_URI"
        if not uri:
            mongo = stack.enter_context(running_secantus(test_commands=False))
            uri, label = mongo.uri, "SecantusDB 0.7.0b3 (:memory:, separate process)"
        moto = stack.enter_context(running_moto())
        sink: RunningSink = start_sink()
        stack.callback(sink.stop)
        _create_tables(moto)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        database = f"bench_{uuid.uuid4().hex[:10]}"
        stage = Stage(uri, label, moto, sink.client, database, workdir)
        try:
            yield stage
        finally:
            client: MongoClient[Any] = MongoClient(uri)
            client.drop_database(database)
            client.close()


def _run_writer(
    stage: Stage,
    changes: int,
    *,
    rate: float | None,
    update_share: float,
    collection: str = COLLECTION,
) -> Any:
    args = [sys.executable, "-m", "bench.writer", "--uri", stage.mongo_uri]
    args += ["--database", stage.database, "--collection", collection]
    args += ["--changes", str(changes), "--update-share", str(update_share)]
    if rate:
        args += ["--rate", str(rate), "--batch", str(max(1, int(rate / 50)))]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchSetupError(f"writer failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mark_start(stage: Stage) -> None:
    """Write a marker change and keep its resume token: the backlog starts right after it."""
    client: MongoClient[Any] = MongoClient(stage.mongo_uri)
    collection = stage.collection(client)
    try:
        with collection.watch(max_await_time_ms=200) as stream:
            collection.insert_one({"benchMarker": True})
            deadline = time.monotonic() + 30
            change = None
            while change is None and time.monotonic() < deadline:
                change = stream.try_next()
        if change is None:
            raise BenchSetupError("the marker change never reached a change stream")
        stage.start_token = json_util.dumps(change["_id"])
    finally:
        client.close()


def write_backlog(stage: Stage, config: RelayBenchConfig) -> dict[str, Any]:
    mark_start(stage)
    written = _run_writer(stage, config.events, rate=None, update_share=config.update_share)
    written["server"] = stage.server_label
    return dict(written)


def _window(stats: dict[str, Any]) -> tuple[int, float, float] | None:
    """Events, seconds and CPU seconds between the first and last CPU sample of the sink."""
    samples = stats["cpu_samples"]
    if len(samples) < 2:
        return None
    first, last = samples[0], samples[-1]
    return (
        last["entries"] - first["entries"],
        last["at"] - first["at"],
        last["cpu_s"] - first["cpu_s"],
    )


def _fill_from_sink(run: RelayRun, stats: dict[str, Any]) -> None:
    window = _window(stats)
    if window is None or window[0] <= 0 or window[1] <= 0:
        run.note = f"too few entries reached the sink ({stats['entries']})"
        return
    events, seconds, cpu = window
    run.measured = True
    run.events = stats["cpu_samples"][-1]["entries"]
    run.events_per_s = events / seconds
    run.cpu_us_per_event = cpu / events * 1e6


def _baseline_args(
    stage: Stage, variant: str, collection: str, result_file: Path, ready_file: Path
) -> list[str]:
    args = [sys.executable, "-m", "bench.baselines", variant, "--uri", stage.mongo_uri]
    args += ["--database", stage.database, "--collection", collection]
    args += ["--result-file", str(result_file), "--ready-file", str(ready_file)]
    if variant == "raw":
        # The same batches as the relay reads with its defaults.
        args += ["--batch-size", str(DEFAULT_READ_BATCH_SIZE)]
    if variant in ("naive", "stage-send"):
        args += ["--events-endpoint", stage.sink.endpoint]
    if variant == "naive":
        args += ["--dynamodb-endpoint", stage.moto.endpoint, "--checkpoint-table", NAIVE_TABLE]
    return args


def run_baseline(
    stage: Stage,
    config: RelayBenchConfig,
    variant: str,
    latency_ms: float,
    *,
    live: bool,
) -> dict[str, Any]:
    """Run `raw` or `naive` in its own process on the backlog (or live) and return its result."""
    tag = uuid.uuid4().hex[:8]
    result_file = stage.workdir / f"{variant}-{tag}.json"
    ready_file = stage.workdir / f"{variant}-{tag}.ready"
    collection = LIVE_COLLECTION if live else COLLECTION
    args = _baseline_args(stage, variant, collection, result_file, ready_file)
    if live:
        events = config.live_changes
        budget = config.live_seconds + (config.naive_seconds if variant == "naive" else 20)
        args += ["--latency"] if variant == "raw" else []
    else:
        events = config.events
        budget = config.naive_seconds if variant == "naive" else config.run_deadline_s
        args += ["--start-after", stage.start_token]
    args += ["--events", str(events), "--max-seconds", str(budget)]

    process = ManagedProcess(f"bench-{variant}", args, env=_aws_env(stage.moto.endpoint))
    process.start()
    try:
        if variant == "stage-send":
            stage.sink.arm(latency_ms=latency_ms)
        if variant == "naive":
            assert process.process is not None
            stage.sink.arm(
                latency_ms=latency_ms,
                watch_pid=process.process.pid,
                target=events,
                latency_since=time.time() if live else None,
            )
        wait_until(
            lambda: ready_file.exists() or not process.running,
            deadline_s=60,
            what=f"{variant} stream open",
        )
        if live:
            _run_writer(
                stage,
                events,
                rate=config.live_rate,
                update_share=config.update_share,
                collection=LIVE_COLLECTION,
            )
        wait_until(lambda: not process.running, deadline_s=budget + 60, what=f"{variant} finished")
        if not result_file.exists():
            raise BenchSetupError(f"{variant} wrote no result: {process.output_tail()}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        process.stop()
    result["expected"] = events
    return result


def _raw_pass(stage: Stage, config: RelayBenchConfig, run: RelayRun) -> dict[str, Any] | None:
    """Read the backlog raw once; the pass's figures join `run`'s (None if too little was read)."""
    backlog = run_baseline(stage, config, "raw", run.sink_latency_ms, live=False)
    if backlog["events"] < 2 or backlog["wall_window_s"] <= 0:
        run.note = run.note or f"read only {backlog['events']} events"
        return None
    run.events = backlog["events"]
    run.add_pass(
        (backlog["events"] - 1) / backlog["wall_window_s"],
        backlog["cpu_window_s"] / backlog["events"] * 1e6,
    )
    run.peak_rss_mib = max(run.peak_rss_mib or 0.0, backlog["peak_rss_mib"])
    return backlog


def measure_raw(stage: Stage, config: RelayBenchConfig, latency_ms: float) -> RelayRun:
    run = RelayRun("raw", latency_ms)
    backlog = _raw_pass(stage, config, run)
    if backlog is None:
        return run
    run.note = "commit → read by pymongo (lower bound)"
    live = run_baseline(stage, config, "raw", latency_ms, live=True)
    run.set_latencies(live["latencies_s"], live["expected"])
    stage.mean_event_bytes = backlog["event_bytes"] / backlog["events"]
    return run


def remeasure_raw(stage: Stage, config: RelayBenchConfig, run: RelayRun) -> None:
    """Read the backlog raw once more, after a pass of the forwarders.

    The machine's load drifts during a run; raw reads before and after every pass of the relay,
    and the median of each, make relay/raw compare like with like (the note lists every read).
    """
    if run.measured:
        _raw_pass(stage, config, run)


def measure_stages(stage: Stage, config: RelayBenchConfig) -> list[StageRun]:
    """The relay's pipeline cut after each stage, on the backlog, with the 0 ms sink."""
    runs = []
    for name in STAGES:
        run = StageRun(name)
        result = run_baseline(stage, config, f"stage-{name}", 0.0, live=False)
        if result["events"] < 2 or result["wall_window_s"] <= 0:
            run.note = f"read only {result['events']} events"
        else:
            run.measured = True
            run.events = result["events"]
            run.events_per_s = (result["events"] - 1) / result["wall_window_s"]
            run.cpu_us_per_event = result["cpu_window_s"] / result["events"] * 1e6
        runs.append(run)
    return runs


def measure_naive(stage: Stage, config: RelayBenchConfig, latency_ms: float) -> RelayRun:
    run = RelayRun("naive", latency_ms)
    backlog = run_baseline(stage, config, "naive", latency_ms, live=False)
    _fill_from_sink(run, stage.sink.stats())
    if not run.measured:
        return run
    run.peak_rss_mib = backlog["peak_rss_mib"]
    run.note = f"stopped after {config.naive_seconds:g} s" if run.events < config.events else ""
    live = run_baseline(stage, config, "naive", latency_ms, live=True)
    run.set_latencies(stage.sink.stats()["latencies_s"], live["expected"])
    if run.latency_delivered < live["expected"]:
        run.note = (run.note + "; " if run.note else "") + "falls behind the live rate"
    return run


# The relay --------------------------------------------------------------------------------------


def _relay_env(stage: Stage) -> dict[str, str]:
    env = _aws_env(stage.moto.endpoint)
    # botocore's service-specific endpoint variable: PutEvents goes to the sink, the checkpoint
    # store (DynamoDB) and everything else to moto_server.
    env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = stage.sink.endpoint
    env.update(
        MONGODB_URI=stage.mongo_uri,
        WATCH_DATABASE=stage.database,
        WATCH_COLLECTIONS=COLLECTION,
        EVENT_BUS_NAME=BUS_NAME,
        EVENT_SOURCE="mongodb.changestream",
        CHECKPOINT_TABLE=RELAY_TABLE,
        RELAY_ID=RELAY_ID,
        POWERTOOLS_SERVICE_NAME="relay",
        POWERTOOLS_METRICS_NAMESPACE="MongoChangeReactions",
        HEALTH_FILE=str(stage.workdir / "relay-health.json"),
    )
    return env


def start_relay(stage: Stage) -> ManagedProcess:
    """`python -m relay run` with its default settings."""
    command = [sys.executable, "-m", "relay", "run"]
    process = ManagedProcess("bench-relay", command, env=_relay_env(stage))
    process.start()
    return process


def _pid(process: ManagedProcess) -> int:
    if process.process is None:
        raise BenchSetupError(f"{process.name} was not started")
    return process.process.pid


def _probe_until_forwarded(stage: Stage, relay: ManagedProcess, deadline_s: float) -> None:
    """Write probe changes until one reaches the sink: the relay is then streaming."""
    client: MongoClient[Any] = MongoClient(stage.mongo_uri)
    collection = stage.collection(client)
    deadline = time.monotonic() + deadline_s
    try:
        while stage.sink.entries() == 0:
            if not relay.running:
                raise BenchSetupError(f"the relay exited: {relay.output_tail(30)}")
            if time.monotonic() > deadline:
                raise BenchSetupError(f"the relay forwarded nothing: {relay.output_tail(30)}")
            collection.insert_one({"benchProbe": True, "nombreProducto": "probe", "cantidad": 99})
            time.sleep(PROBE_EVERY_S)
    finally:
        client.close()


def _checkpoint_items(stage: Stage) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _dynamodb(stage).scan(TableName=RELAY_TABLE)["Items"]
    return items


def prime_relay(stage: Stage) -> None:
    """Run the relay once until it has checkpointed, stop it, and keep its checkpoint table.

    The backlog is then written while the relay is stopped; restoring this checkpoint before each
    run makes the relay resume right before the backlog, using only its documented interface.
    """
    stage.sink.arm(latency_ms=0)
    relay = start_relay(stage)
    try:
        _probe_until_forwarded(stage, relay, deadline_s=90)
        wait_until(
            lambda: bool(_checkpoint_items(stage)), deadline_s=60, what="relay checkpoint written"
        )
    finally:
        relay.stop()
    stage.relay_checkpoint = _checkpoint_items(stage)


def _restore_checkpoint(stage: Stage) -> None:
    dynamodb = _dynamodb(stage)
    for item in _checkpoint_items(stage):
        dynamodb.delete_item(TableName=RELAY_TABLE, Key={"relayId": item["relayId"]})
    for item in stage.relay_checkpoint:
        dynamodb.put_item(TableName=RELAY_TABLE, Item=item)


def _forward_backlog(
    stage: Stage, config: RelayBenchConfig, relay: ManagedProcess, latency_ms: float
) -> RelayRun:
    """Time the started relay over the backlog, from the sink's CPU samples of its process."""
    one_pass = RelayRun("relay", latency_ms)
    # The marker change precedes the backlog; a probe may be re-sent (at-least-once).
    target = config.events + 1
    stage.sink.arm(latency_ms=latency_ms, watch_pid=_pid(relay), target=target)
    stage.sink.wait_for_entries(
        target, deadline_s=config.run_deadline_s, what="relay forwarding the backlog"
    )
    _fill_from_sink(one_pass, stage.sink.stats())
    return one_pass


def _add_relay_pass(run: RelayRun, one_pass: RelayRun) -> None:
    if not one_pass.measured or one_pass.events_per_s is None:
        raise BenchSetupError(one_pass.note or "the relay's pass was not measured")
    assert one_pass.cpu_us_per_event is not None
    run.events = one_pass.events
    run.add_pass(one_pass.events_per_s, one_pass.cpu_us_per_event)


def measure_relay(stage: Stage, config: RelayBenchConfig, latency_ms: float) -> RelayRun:
    """The relay on the backlog, then (still running, caught up) on the paced live writer."""
    run = RelayRun("relay", latency_ms)
    _restore_checkpoint(stage)
    relay = start_relay(stage)
    try:
        _add_relay_pass(run, _forward_backlog(stage, config, relay, latency_ms))
        # Let the relay finish what it still has in flight (a re-sent probe, say) before timing.
        stage.sink.wait_quiet(quiet_s=0.5, deadline_s=30)
        stage.sink.arm(latency_ms=latency_ms, latency_since=time.time())
        _run_writer(
            stage,
            config.live_changes,
            rate=config.live_rate,
            update_share=config.update_share,
        )
        with contextlib.suppress(TimeoutError):
            stage.sink.wait_for_latencies(
                config.live_changes, deadline_s=30, what="relay forwarding the live changes"
            )
        run.set_latencies(stage.sink.stats()["latencies_s"], config.live_changes)
        run.peak_rss_mib = process_peak_rss_mib(_pid(relay))
    except (TimeoutError, BenchSetupError) as error:
        run.measured = False
        said = (relay.output_tail(3).strip().splitlines() or ["nothing"])[-1]
        run.note = f"failed: {error}; the relay's last output: {said}"
    finally:
        relay.stop()
    return run


def relay_pass_again(stage: Stage, config: RelayBenchConfig, run: RelayRun) -> None:
    """Forward the backlog once more from the same checkpoint; the pass joins `run`'s figures."""
    if not run.measured:
        return
    _restore_checkpoint(stage)
    relay = start_relay(stage)
    try:
        _add_relay_pass(run, _forward_backlog(stage, config, relay, run.sink_latency_ms))
        peak = process_peak_rss_mib(_pid(relay))
        if peak is not None:
            run.peak_rss_mib = max(run.peak_rss_mib or 0.0, peak)
    except (TimeoutError, BenchSetupError) as error:
        said = (relay.output_tail(3).strip().splitlines() or ["nothing"])[-1]
        run.note = f"a later pass failed: {error}; the relay's last output: {said}"
    finally:
        relay.stop()


def profile_relay(stage: Stage, config: RelayBenchConfig, directory: Path) -> Path:
    """Forward the backlog once more (0 ms sink) with py-spy attached; write its summary.

    Writes `relay-profile.txt` (summary) and `relay-profile.folded` (collapsed stacks, for a
    flame graph) to `directory` and returns the summary's path.
    """
    folded = directory / "relay-profile.folded"
    summary = directory / "relay-profile.txt"
    folded.unlink(missing_ok=True)
    _restore_checkpoint(stage)
    relay = start_relay(stage)
    try:
        stage.sink.arm(latency_ms=0)
        # Attach once the relay is streaming, so imports and start-up are not in the profile.
        stage.sink.wait_for_entries(1, deadline_s=60, what="relay streaming")
        profiler = start_profiler(_pid(relay), folded)
        try:
            stage.sink.wait_for_entries(
                config.events + 1, deadline_s=config.run_deadline_s * 2, what="profiled relay"
            )
        finally:
            stop_profiler(profiler, folded)
    finally:
        relay.stop()
    with folded.open() as lines:
        summary.write_text(summarise(lines))
    return summary


def _throughput_ratio(run: RelayRun, base: RelayRun | None) -> float | None:
    if base is None or not base.events_per_s or not run.events_per_s:
        return None
    return run.events_per_s / base.events_per_s


def targets_missed(runs: list[RelayRun]) -> list[str]:
    """Which of the issue's targets the measured relay runs miss."""
    by_key = {(run.variant, run.sink_latency_ms): run for run in runs if run.measured}
    missed = []
    for (variant, latency), run in by_key.items():
        if variant != "relay":
            continue
        if run.cpu_us_per_event is not None and run.cpu_us_per_event > TARGET_CPU_US:
            missed.append(f"CPU {run.cpu_us_per_event:.0f} µs/event at {latency:g} ms")
        raw, naive = by_key.get(("raw", latency)), by_key.get(("naive", latency))
        to_raw = _throughput_ratio(run, raw)
        if latency == 0 and to_raw is not None and to_raw < TARGET_RAW_RATIO:
            missed.append("relay/raw at 0 ms")
        to_naive = _throughput_ratio(run, naive)
        if latency == 25 and to_naive is not None and to_naive < TARGET_NAIVE_RATIO:
            missed.append("relay/naive at 25 ms")
    return missed


@dataclass
class RelayBenchOutcome:
    runs: list[RelayRun]
    source: dict[str, Any]
    profile_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    stage_runs: list[StageRun] = field(default_factory=list)


def run_relay_bench(config: RelayBenchConfig, *, log: Any = print) -> RelayBenchOutcome:
    """Measure the three variants at every sink latency, then profile the relay (unless told not
    to)."""
    with staged(config) as stage:
        notes: list[str] = []
        relay_ready = relay_available()
        if relay_ready:
            log("priming the relay (first start, checkpoint)")
            try:
                prime_relay(stage)
            except (BenchSetupError, TimeoutError) as error:
                relay_ready = False
                notes.append(f"the relay could not be started: {error}")
        log(f"writing the backlog: {config.events:,} changes")
        source = write_backlog(stage, config)

        runs: list[RelayRun] = []
        for latency in config.sink_latencies_ms:
            log(f"sink {latency:g} ms: raw read")
            raw = measure_raw(stage, config, latency)
            runs.append(raw)
            log(f"sink {latency:g} ms: naive relay")
            runs.append(measure_naive(stage, config, latency))
            if relay_ready:
                log(f"sink {latency:g} ms: relay")
                runs.append(measure_relay(stage, config, latency))
            else:
                reason = "relay/ is not in this checkout yet" if not notes else "did not start"
                runs.append(RelayRun("relay", latency, note=reason))
            log(f"sink {latency:g} ms: raw read again")
            remeasure_raw(stage, config, raw)
            relay_run = runs[-1]
            for round_number in range(2, config.rounds + 1):
                log(f"sink {latency:g} ms: round {round_number}: relay, raw read")
                relay_pass_again(stage, config, relay_run)
                remeasure_raw(stage, config, raw)
            for run, what in ((raw, "reads around the relay's passes"), (relay_run, "passes")):
                passes = run.passes_note(what)
                run.note = "; ".join(part for part in (run.note, passes) if part)
        source["mean_event_bytes"] = stage.mean_event_bytes
        stage_runs = []
        if relay_ready:
            log("the relay's pipeline, stage by stage (0 ms sink)")
            stage_runs = measure_stages(stage, config)

        # Profiled whatever the verdict: where the time goes is worth knowing when a target is
        # met too, and a profile left from an earlier run would describe other code.
        profile_path = None
        missed = targets_missed(runs)
        if config.profile and relay_ready:
            verdict = f"targets missed: {', '.join(missed)}" if missed else "every target met"
            log(f"profiling the relay ({verdict})")
            config.results_dir.mkdir(parents=True, exist_ok=True)
            try:
                profile_path = profile_relay(stage, config, config.results_dir)
            except (BenchSetupError, ProfilerError, TimeoutError) as error:
                notes.append(f"profiling the relay failed: {error}")
        return RelayBenchOutcome(runs, source, profile_path, notes, stage_runs)
