"""Sample a running process with py-spy (all threads) and summarise where its CPU time goes.

py-spy runs beside the relay, attached by pid, so the relay runs unchanged; its read-ahead and
sender threads are sampled too (an in-process profiler such as pyinstrument sees only the main
thread). Only used for a separate profile run: its sampling would distort the measured runs on 2
cores.
"""

import contextlib
import re
import signal
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from localdev.servers import ManagedProcess, executable, wait_until

SAMPLE_RATE_HZ = 200


class ProfilerError(RuntimeError):
    """py-spy could not attach or wrote nothing."""


def start_profiler(pid: int, folded_path: Path) -> ManagedProcess:
    """Attach py-spy to `pid`, writing collapsed stacks (one line per stack) when stopped."""
    # --gil: only the thread holding the GIL is sampled, i.e. Python-level CPU work; threads
    # blocked on sockets or locks (which py-spy's idle heuristic sometimes counts) drop out.
    args = [executable("py-spy"), "record", "--pid", str(pid), "--threads", "--nonblocking"]
    args += ["--gil"]
    args += ["--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--output", str(folded_path)]
    profiler = ManagedProcess("py-spy", args)
    profiler.start()
    return profiler


def stop_profiler(profiler: ManagedProcess, folded_path: Path) -> None:
    """Stop py-spy as Ctrl-C would, so it writes its output; fail if it wrote none."""
    process = profiler.process
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not profiler.running, deadline_s=30, what="py-spy written")
    tail = profiler.output_tail()
    profiler.stop()
    if not folded_path.exists() or folded_path.stat().st_size == 0:
        raise ProfilerError(f"py-spy wrote no samples: {tail}")


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)": lines would split one function.
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if match is None:
        return frame
    function, path = match.groups()
    return f"{function} ({'/'.join(path.split('/')[-2:])})"


def _thread_role(code: list[str]) -> str:
    """Name a stack's thread by its first project frame (reader loop, sender, checkpoint...)."""
    for name in code:
        if "relay/" in name or "(relay" in name:
            return name
    return code[min(3, len(code) - 1)] if code else "?"


def summarise(lines: Iterable[str], *, top: int = 25) -> str:
    """A text summary of collapsed stacks: by thread role, by own time, and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        code = [
            _frame_name(frame)
            for frame in stack.split(";")
            if not frame.startswith(("thread (", "process "))
        ]
        roles[_thread_role(code)] += count
        if code:
            own[code[-1]] += count
        for name in set(code):
            inclusive[name] += count
    if total == 0:
        return "no samples\n"

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [title, ""]
        for name, count in counter.most_common(top):
            rows.append(f"{100 * count / total:6.1f}%  {count:7d}  {name}")
        return [*rows, ""]

    parts = [
        f"{total} samples at {SAMPLE_RATE_HZ} Hz of whichever thread held the GIL (py-spy --gil)",
        "",
    ]
    parts += table("By thread, named by its first relay frame:", roles)
    parts += table("Own time (the function on top of the stack):", own)
    parts += table("Inclusive time (the function anywhere on the stack):", inclusive)
    return "\n".join(parts)
