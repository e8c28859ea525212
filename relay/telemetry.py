"""Logs, metrics and the health file of the relay.

Counters are kept in memory by the hot path (one lock per batch, never per event) and emitted as
CloudWatch EMF by one background thread, so Powertools Metrics is only ever touched by one thread.
Never logs document bodies.
"""

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger: Final = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "relay")

# Metric name -> unit. Counters are summed over an interval; gauges keep the interval's maximum.
COUNTERS: Final = {
    "EventsRead": MetricUnit.Count,
    "EventsForwarded": MetricUnit.Count,
    "PutEventsRequests": MetricUnit.Count,
    "PutEventsFailedEntries": MetricUnit.Count,
    "Retries": MetricUnit.Count,
    "PermanentFailures": MetricUnit.Count,
    "DeadLettered": MetricUnit.Count,
    "BadInput": MetricUnit.Count,
    "OversizeShrunk": MetricUnit.Count,
    "OversizeOffloaded": MetricUnit.Count,
    "CheckpointWrites": MetricUnit.Count,
    "CheckpointErrors": MetricUnit.Count,
    "CheckpointRejected": MetricUnit.Count,
    "StreamReopened": MetricUnit.Count,
    "HistoryLost": MetricUnit.Count,
    "GapEvents": MetricUnit.Count,
    "Invalidated": MetricUnit.Count,
}
GAUGES: Final = {
    "LagSeconds": MetricUnit.Seconds,
    "CheckpointAgeSeconds": MetricUnit.Seconds,
}


class Stats:
    """Thread-safe counters and gauges, read and reset by the metrics thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self._totals: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self._gauges: dict[str, float] = {}
        self._batch_entries = 0
        self.last_checkpoint_at: float | None = None  # monotonic time of the last saved checkpoint

    def add(self, name: str, value: float = 1) -> None:
        with self._lock:
            self._counters[name] += value
            self._totals[name] += value

    def batch(self, entries: int, lag_s: float | None) -> None:
        """One PutEvents request that forwarded `entries`; `lag_s` of its newest event."""
        with self._lock:
            self._counters["PutEventsRequests"] += 1
            self._totals["PutEventsRequests"] += 1
            self._counters["EventsForwarded"] += entries
            self._totals["EventsForwarded"] += entries
            self._batch_entries += entries
            if lag_s is not None:
                self._gauges["LagSeconds"] = max(self._gauges.get("LagSeconds", 0.0), lag_s)

    def total(self, name: str) -> float:
        with self._lock:
            return self._totals[name]

    def totals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._totals)

    def drain(self) -> dict[str, tuple[float, str]]:
        """What happened since the last call, as {metric: (value, unit)}."""
        with self._lock:
            counters, self._counters = self._counters, dict.fromkeys(COUNTERS, 0.0)
            gauges, self._gauges = self._gauges, {}
            batch_entries, self._batch_entries = self._batch_entries, 0
        out: dict[str, tuple[float, str]] = {}
        for name, value in counters.items():
            if value:
                out[name] = (value, COUNTERS[name].value)
        for name, value in gauges.items():
            out[name] = (value, GAUGES[name].value)
        requests = counters["PutEventsRequests"]
        if requests:
            out["BatchSize"] = (batch_entries / requests, MetricUnit.Count.value)
        if self.last_checkpoint_at is not None:
            age = time.monotonic() - self.last_checkpoint_at
            out["CheckpointAgeSeconds"] = (round(age, 3), MetricUnit.Seconds.value)
        return out


class MetricsEmitter:
    """Flushes `Stats` as one EMF document every interval, from one thread."""

    def __init__(self, stats: Stats, *, namespace: str, service: str, relay_id: str) -> None:
        self._stats = stats
        self._metrics = Metrics(namespace=namespace, service=service)
        self._relay_id = relay_id

    def emit(self) -> None:
        values = self._stats.drain()
        if not values:
            return
        self._metrics.add_dimension(name="RelayId", value=self._relay_id)
        for name, (value, unit) in values.items():
            self._metrics.add_metric(name=name, unit=unit, value=value)
        self._metrics.flush_metrics()


class HealthFile:
    """A small JSON file the container health check reads (`python -m relay health`)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def write(self, state: str, **fields: Any) -> None:
        body = json.dumps({"state": state, "updatedAt": time.time(), "pid": os.getpid(), **fields})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".health-")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(body)
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


HEALTHY_STATES: Final = frozenset(
    {"starting", "standby", "backfilling", "streaming", "reconnecting"}
)


def check_health(path: str, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """Whether the health file says the relay is alive: recent, and in a healthy state."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        return False, f"health file {path} unreadable: {error}"
    age = (now if now is not None else time.time()) - float(body.get("updatedAt", 0))
    state = body.get("state")
    if age > max_age_s:
        return False, f"health file is {age:.0f} s old (limit {max_age_s:.0f} s), state {state}"
    if state not in HEALTHY_STATES:
        return False, f"relay state is {state}"
    return True, f"relay {state}, health file {age:.1f} s old"


class Ticker:
    """A daemon thread calling `action` every `interval_s` until stopped (and once at the end)."""

    def __init__(self, name: str, interval_s: float, action: Any) -> None:
        self._interval_s = interval_s
        self._action = action
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self._run_once()

    def _run_once(self) -> None:
        try:
            self._action()
        except Exception:  # a background duty must not die silently: log and go on
            logger.exception("background task failed", task=self._thread.name)

    def stop(self, *, final_run: bool = True) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if final_run:
            self._run_once()
