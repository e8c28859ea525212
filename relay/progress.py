"""Progress of a long operator command: a bar on a terminal, periodic log lines elsewhere (ECS).

Counts come from the caller (acknowledged documents, replayed time); this module only renders.
Never writes document content.
"""

import sys
import threading
import time
from collections.abc import Callable
from typing import Literal, TextIO

from relay.telemetry import logger

ProgressMode = Literal["auto", "bar", "log", "off"]
_BAR_WIDTH = 30


def format_duration(seconds: float | None) -> str:
    """`1:02:03`, `4:05`, or `?` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Tracks done/total over time; `line()` renders count, rate and ETA.

    `done` is read from `count` (a callable), so the renderer never needs a lock of its own.
    The rate is measured from when the progress started, over what was done since then (a
    resumed run does not claim the earlier run's work as its speed).
    """

    def __init__(
        self,
        count: Callable[[], float],
        total: float | None,
        *,
        what: str,
        already_done: float = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self.total = total
        self.what = what
        self._already = already_done
        self._clock = clock
        self._started = clock()

    def snapshot(self) -> dict[str, float | None]:
        done = self._already + self._count()
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = (done - self._already) / elapsed
        eta = None
        if self.total is not None and rate > 0:
            eta = max(self.total - done, 0) / rate
        return {"done": done, "total": self.total, "rate": rate, "eta": eta, "elapsed": elapsed}

    def line(self) -> str:
        state = self.snapshot()
        done = int(state["done"] or 0)
        rate = state["rate"] or 0.0
        total = state["total"]
        if total:
            fraction = min(done / total, 1.0)
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            head = f"[{bar}] {done}/{int(total)} {self.what} {fraction * 100:5.1f}%"
        else:
            head = f"{done} {self.what}"
        return f"{head}  {rate:,.0f}/s  ETA {format_duration(state['eta'])}"


class ProgressReporter:
    """Renders a `Progress` every interval from a daemon thread until stopped.

    On a terminal the bar is redrawn in place on stderr; otherwise a `progress` log line with the
    same numbers is written every `log_interval_s` (so ECS logs show it without control codes).
    """

    def __init__(
        self,
        progress: Progress,
        *,
        mode: ProgressMode = "auto",
        stream: TextIO | None = None,
        bar_interval_s: float = 0.5,
        log_interval_s: float = 15.0,
    ) -> None:
        self._progress = progress
        self._stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self._stream.isatty() else "log"
        self.mode = mode
        self._interval = bar_interval_s if mode == "bar" else log_interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> None:
        if self.mode != "off":
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self.render()

    def render(self) -> None:
        if self.mode == "bar":
            self._stream.write("\r" + self._progress.line() + "\x1b[K")
            self._stream.flush()
        elif self.mode == "log":
            state = self._progress.snapshot()
            logger.info(
                "progress",
                what=self._progress.what,
                done=int(state["done"] or 0),
                total=None if state["total"] is None else int(state["total"]),
                rate_per_s=round(state["rate"] or 0.0, 1),
                eta_s=None if state["eta"] is None else round(state["eta"]),
            )

    def stop(self) -> None:
        """Stop and render a last time (the final numbers), ending the bar's line."""
        if self.mode == "off":
            return
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.render()
        if self.mode == "bar":
            self._stream.write("\n")
            self._stream.flush()
