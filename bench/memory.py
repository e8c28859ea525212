"""Peak resident memory of a process, as the benchmark reports it.

Read from `VmHWM` in /proc/PID/status: the high-water mark of the process's own address space.
`getrusage(...).ru_maxrss` is not used: on Linux it survives `exec`, so a process started from a
large parent reports the parent's size. Imports nothing heavy, so a measured process stays lean.
"""

import os
import resource
from pathlib import Path


def process_peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a running process, in MiB; None when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def own_peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (ru_maxrss where /proc is missing)."""
    measured = process_peak_rss_mib(os.getpid())
    if measured is not None:
        return measured
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
