"""The figures a benchmark run produces, and the arithmetic on them (percentiles, ratios).

Plain data only: nothing here starts a process or measures anything.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("raw", "naive", "relay")

# The targets for the relay.
TARGET_RAW_RATIO = 0.8  # of the raw read rate, with the 0 ms sink
TARGET_NAIVE_RATIO = 20.0  # times the naive relay, with the 25 ms sink
TARGET_CPU_US = 60.0  # CPU microseconds per event


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` in 0..1) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class RelayRun:
    """One variant at one sink latency. `None` figures were not measured (see `note`)."""

    variant: str
    sink_latency_ms: float
    measured: bool = False
    events: int = 0
    events_per_s: float | None = None
    cpu_us_per_event: float | None = None
    peak_rss_mib: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_delivered: int = 0
    latency_expected: int = 0
    note: str = ""
    # Each pass over the backlog (events/s, CPU µs/event); the figures above are their medians.
    passes_per_s: list[float] = field(default_factory=list)
    passes_cpu_us: list[float] = field(default_factory=list)

    def add_pass(self, events_per_s: float, cpu_us_per_event: float) -> None:
        """One more pass over the backlog: events/s and CPU become the median of all passes."""
        self.measured = True
        self.passes_per_s.append(events_per_s)
        self.passes_cpu_us.append(cpu_us_per_event)
        self.events_per_s = statistics.median(self.passes_per_s)
        self.cpu_us_per_event = statistics.median(self.passes_cpu_us)

    def passes_note(self, what: str) -> str:
        """'median of 3 <what> (a, b, c/s)', or '' after a single pass."""
        if len(self.passes_per_s) < 2:
            return ""
        rates = ", ".join(f"{rate:,.0f}" for rate in self.passes_per_s)
        return f"median of {len(self.passes_per_s)} {what} ({rates}/s)"

    def set_latencies(self, latencies_s: Sequence[float], expected: int) -> None:
        p50, p99 = percentile(latencies_s, 0.5), percentile(latencies_s, 0.99)
        self.latency_p50_ms = None if p50 is None else p50 * 1000
        self.latency_p99_ms = None if p99 is None else p99 * 1000
        self.latency_delivered = len(latencies_s)
        self.latency_expected = expected


@dataclass
class StageRun:
    """The relay's pipeline cut after one stage (bench/stages.py), with the 0 ms sink."""

    stage: str
    measured: bool = False
    events: int = 0
    events_per_s: float | None = None
    cpu_us_per_event: float | None = None
    note: str = ""


@dataclass
class FunctionRun:
    """One handler (a project function or its bare boto3 baseline)."""

    name: str
    baseline_of: str | None = None
    measured: bool = False
    cold_init_ms: float | None = None
    first_call_ms: float | None = None
    warm_ms_per_event: float | None = None
    peak_rss_mib: float | None = None
    invocations: int = 0
    note: str = ""


@dataclass
class BenchReport:
    """Everything one `python -m bench` run measured, with the machine and the command."""

    command: str
    machine: dict[str, str]
    events: int
    source: dict[str, Any] = field(default_factory=dict)
    relay_runs: list[RelayRun] = field(default_factory=list)
    stage_runs: list[StageRun] = field(default_factory=list)
    function_runs: list[FunctionRun] = field(default_factory=list)
    profile_path: str | None = None
    notes: list[str] = field(default_factory=list)
    # The relay's steps in isolation (bench/hot_path.py), as rendered rows.
    hot_path: str | None = None

    def run(self, variant: str, sink_latency_ms: float) -> RelayRun | None:
        for run in self.relay_runs:
            if run.variant == variant and run.sink_latency_ms == sink_latency_ms:
                return run
        return None

    def sink_latencies(self) -> list[float]:
        return sorted({run.sink_latency_ms for run in self.relay_runs})

    def ratio(self, variant: str, baseline: str, sink_latency_ms: float) -> float | None:
        """Throughput of `variant` over `baseline` at one sink latency, when both were measured."""
        run, base = self.run(variant, sink_latency_ms), self.run(baseline, sink_latency_ms)
        if run is None or base is None or not run.events_per_s or not base.events_per_s:
            return None
        return run.events_per_s / base.events_per_s
