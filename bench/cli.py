"""`python -m bench` (`make bench ARGS=...`): run the benchmarks, print and write the results.

Sizes are configurable so a full run stays within a few minutes on a 2-core machine; `--quick`
is a smoke run of a few hundred events (used by the tests: it measures nothing worth quoting).
"""

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.figures import BenchReport

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError as error:
        model = f"unknown CPU ({error.strerror})"
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code": measured_code(),
    }


def measured_code() -> str:
    """The commit of the measured code, and whether the work tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    paths = ["relay", "native", "functions", "layers"]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args, "--", *paths],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    return f"{commit} (work tree {'with uncommitted changes' if dirty else 'clean'})"


def _shown(path: Path) -> str:
    """A path as the results should show it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="backlog size (changes)")
    parser.add_argument(
        "--sink-latencies", default="0,25", help="added PutEvents latency per call, ms, commas"
    )
    parser.add_argument(
        "--naive-seconds", type=float, default=8.0, help="time budget of each naive run"
    )
    parser.add_argument("--live-rate", type=float, default=200.0, help="changes/s, latency runs")
    parser.add_argument("--live-seconds", type=float, default=4.0, help="length of latency runs")
    parser.add_argument("--update-share", type=float, default=0.25, help="share of updates")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="passes of the relay over the backlog per sink latency, each followed by a raw "
        "read; the tables show the medians",
    )
    parser.add_argument("--invocations", type=int, default=300, help="warm calls per function")
    parser.add_argument("--no-profile", action="store_true", help="never run the profiler")
    parser.add_argument("--skip-relay", action="store_true")
    parser.add_argument("--skip-functions", action="store_true")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"default {DEFAULT_RESULTS} (with --quick: a temporary folder, so a smoke run "
        "never replaces the quoted results)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.naive_seconds, args.live_rate, args.live_seconds = 300, 2.0, 100.0, 1.0
        args.invocations, args.no_profile, args.rounds = 20, True, 2
    if args.results_dir is None:
        quick = Path(tempfile.gettempdir()) / "mongo-change-reactions-bench-quick"
        args.results_dir = quick if args.quick else DEFAULT_RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    # Imported here so `--help` and argument parsing need neither drivers nor servers.
    from bench.functions_bench import FunctionBenchConfig, run_function_bench
    from bench.hot_path import hot_path_table, measure_hot_path
    from bench.relay_bench import RelayBenchConfig, run_relay_bench
    from bench.report import render_markdown, write_results

    args = parse_args(argv)
    command = "make bench" + (f" ARGS={shlex.quote(shlex.join(argv))}" if argv else "")
    if argv is None:
        given = sys.argv[1:]
        command = "make bench" + (f" ARGS={shlex.quote(shlex.join(given))}" if given else "")
    report = BenchReport(command=command, machine=machine(), events=args.events)

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    if not args.skip_relay:
        latencies = tuple(float(part) for part in args.sink_latencies.split(",") if part.strip())
        config = RelayBenchConfig(
            events=args.events,
            sink_latencies_ms=latencies,
            naive_seconds=args.naive_seconds,
            live_rate=args.live_rate,
            live_seconds=args.live_seconds,
            update_share=args.update_share,
            rounds=max(1, args.rounds),
            profile=not args.no_profile,
            results_dir=args.results_dir,
        )
        outcome = run_relay_bench(config, log=log)
        report.relay_runs, report.source = outcome.runs, outcome.source
        report.stage_runs = outcome.stage_runs
        report.notes += outcome.notes
        if outcome.profile_path is not None:
            report.profile_path = _shown(outcome.profile_path)
        log("relay: its steps in isolation")
        changes = 200 if args.quick else 2_000
        report.hot_path = hot_path_table(measure_hot_path(changes, rounds=1 if args.quick else 3))
    if not args.skip_functions:
        log("functions: cold start and warm invocations")
        report.function_runs = run_function_bench(
            FunctionBenchConfig(invocations=args.invocations), log=log
        )

    paths = write_results(report, args.results_dir)
    print(render_markdown(report))
    log(f"written: {', '.join(str(path) for path in paths.values())}")
    return 0
