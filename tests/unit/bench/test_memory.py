"""Peak memory as the benchmark reports it: the process's own high-water mark, not its parent's."""

import os
import subprocess
import sys

from bench.memory import own_peak_rss_mib, process_peak_rss_mib

CHILD = (
    "import os, resource\n"
    "from bench.memory import own_peak_rss_mib\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, own_peak_rss_mib())\n"
)


def test_this_process_has_a_peak_and_a_gone_process_has_none():
    assert own_peak_rss_mib() > 1
    assert process_peak_rss_mib(os.getpid()) == own_peak_rss_mib()
    # 2**22 is above Linux's largest pid_max, so no process ever has it.
    assert process_peak_rss_mib(2**22) is None


def test_a_child_of_a_large_process_reports_its_own_size_not_the_parents():
    # GIVEN this process holding 200 MiB it has touched
    ballast = bytearray(200 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))

    # WHEN a fresh Python started from it reports both measures
    answer = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout.split()
    maxrss, own = float(answer[0]), float(answer[1])

    # THEN ru_maxrss carries this process's size across exec (Linux), VmHWM does not
    assert maxrss >= 200
    assert own < 100
    del ballast
