"""Render a `BenchReport` as the markdown table and the PNG chart in `bench/results/`.

Figures that were not measured are shown as such, with the reason: never as a number.
"""

import json
from dataclasses import asdict
from pathlib import Path

from bench.figures import (
    TARGET_CPU_US,
    TARGET_NAIVE_RATIO,
    TARGET_RAW_RATIO,
    VARIANTS,
    BenchReport,
    FunctionRun,
    RelayRun,
    StageRun,
)

NOT_MEASURED = "not measured"
_LABELS = {"raw": "raw read (pymongo, no forwarding)", "naive": "naive relay", "relay": "relay"}


def _cell(text: str, limit: int = 160) -> str:
    """One table cell: a single line, no pipes, bounded length (error output can be long)."""
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _latency(run: RelayRun) -> tuple[str, str]:
    if run.latency_p50_ms is None:
        return "—", "—"
    p50, p99 = _number(run.latency_p50_ms, 1), _number(run.latency_p99_ms, 1)
    if run.latency_delivered < run.latency_expected:
        p99 += f" ({run.latency_delivered}/{run.latency_expected} delivered)"
    return p50, p99


def relay_table(report: BenchReport) -> str:
    lines = [
        "| sink latency | variant | events | events/s | CPU µs/event | peak RSS MiB "
        "| e2e p50 ms | e2e p99 ms | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for latency in report.sink_latencies():
        for variant in VARIANTS:
            run = report.run(variant, latency)
            if run is None:
                continue
            label = _LABELS[variant]
            if not run.measured:
                lines.append(
                    f"| {latency:g} ms | {label} | {NOT_MEASURED} | — | — | — | — | — "
                    f"| {_cell(run.note)} |"
                )
                continue
            p50, p99 = _latency(run)
            lines.append(
                f"| {latency:g} ms | {label} | {run.events:,} | {_number(run.events_per_s)} "
                f"| {_number(run.cpu_us_per_event, 1)} | {_number(run.peak_rss_mib, 1)} "
                f"| {p50} | {p99} | {_cell(run.note)} |"
            )
    return "\n".join(lines)


def ratio_table(report: BenchReport) -> str:
    lines = [
        "| sink latency | relay/raw | relay/naive | relay CPU µs/event | targets |",
        "|---:|---:|---:|---:|---|",
    ]
    for latency in report.sink_latencies():
        relay = report.run("relay", latency)
        to_raw = report.ratio("relay", "raw", latency)
        to_naive = report.ratio("relay", "naive", latency)
        cpu = relay.cpu_us_per_event if relay is not None and relay.measured else None
        lines.append(
            f"| {latency:g} ms | {_ratio(to_raw)} | {_ratio(to_naive)} | {_number(cpu, 1)} "
            f"| {_target_verdict(latency, to_raw, to_naive, cpu)} |"
        )
    return "\n".join(lines)


def _target_verdict(
    latency: float, to_raw: float | None, to_naive: float | None, cpu: float | None
) -> str:
    if cpu is None:
        return f"relay {NOT_MEASURED}"
    verdicts = [f"CPU <= {TARGET_CPU_US:g} µs: {'met' if cpu <= TARGET_CPU_US else 'MISSED'}"]
    if latency == 0 and to_raw is not None:
        met = to_raw >= TARGET_RAW_RATIO
        verdicts.append(f">= {TARGET_RAW_RATIO:g} of raw: {'met' if met else 'MISSED'}")
    if latency == 25 and to_naive is not None:
        met = to_naive >= TARGET_NAIVE_RATIO
        verdicts.append(f">= {TARGET_NAIVE_RATIO:g}x naive: {'met' if met else 'MISSED'}")
    return "; ".join(verdicts)


# What each stage of bench/stages.py runs, as the table says it.
_STAGE_WORK = {
    "read": "change stream read ahead (`PrefetchedStream`)",
    "encode": "+ detail rendered, oversize tiers (`ChangeEncoder`)",
    "batch": "+ batches, sender loop, watermark (`Forwarder`, no I/O)",
    "send": "+ lean PutEvents client to the sink",
}


def stage_table(runs: list[StageRun]) -> str:
    """Each cut of the pipeline, with the CPU per change the stage adds to the one before."""
    lines = [
        "| stage | what runs | events/s | CPU µs/change | added µs/change |",
        "|---|---|---:|---:|---:|",
    ]
    before: float | None = None
    for run in runs:
        cpu = run.cpu_us_per_event if run.measured else None
        added = None if cpu is None or before is None else cpu - before
        note = f" ({_cell(run.note)})" if run.note else ""
        lines.append(
            f"| {run.stage} | {_STAGE_WORK.get(run.stage, '')}{note} | "
            f"{_number(run.events_per_s)} | {_number(cpu, 1)} | {_number(added, 1)} |"
        )
        before = cpu
    return "\n".join(lines)


def function_table(runs: list[FunctionRun]) -> str:
    lines = [
        "| handler | baseline of | cold init ms | first call ms | warm ms/event | peak RSS MiB "
        "| warm calls | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        baseline = run.baseline_of or ""
        if not run.measured:
            lines.append(
                f"| {run.name} | {baseline} | {NOT_MEASURED} | — | — | — | — | {_cell(run.note)} |"
            )
            continue
        lines.append(
            f"| {run.name} | {baseline} | {_number(run.cold_init_ms, 1)} "
            f"| {_number(run.first_call_ms, 1)} | {_number(run.warm_ms_per_event, 2)} "
            f"| {_number(run.peak_rss_mib, 1)} "
            f"| {run.invocations:,} | {_cell(run.note)} |"
        )
    return "\n".join(lines)


def _ratio_of(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"{value / base:.1f}x"


def function_ratio_table(runs: list[FunctionRun]) -> str:
    """Each function over its bare baseline, both measured in the same run."""
    lines = [
        "| function | baseline | cold init / baseline | warm ms/event / baseline |",
        "|---|---|---:|---:|",
    ]
    baselines = [run for run in runs if run.baseline_of and run.measured]
    for run in runs:
        if run.baseline_of:
            continue
        base = next((b for b in baselines if run.name in (b.baseline_of or "").split(", ")), None)
        if base is None or not run.measured:
            lines.append(f"| {run.name} | {base.name if base else '—'} | — | — |")
            continue
        lines.append(
            f"| {run.name} | {base.name} | {_ratio_of(run.cold_init_ms, base.cold_init_ms)} "
            f"| {_ratio_of(run.warm_ms_per_event, base.warm_ms_per_event)} |"
        )
    return "\n".join(lines)


def render_markdown(report: BenchReport) -> str:
    machine = report.machine
    parts = [
        "# Benchmark results",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', '?')}), "
        f"Python {machine.get('python', '?')}, {machine.get('platform', '?')}; "
        f"run at {machine.get('when', '?')}; relay (with native/), functions and layer at commit "
        f"{machine.get('code', '?')}.",
    ]
    if report.source:
        source = report.source
        parts += [
            "",
            f"Source: {source.get('server', '?')}; backlog of {report.events:,} changes "
            f"({source.get('inserts', 0):,} inserts of ~1 KB products, "
            f"{source.get('updates', 0):,} stock updates) written at "
            f"{_number(source.get('rate'))} changes/s by the writer process; "
            f"mean change event {_number(source.get('mean_event_bytes'))} bytes (BSON).",
        ]
    parts += ["", "## Relay", "", relay_table(report), "", ratio_table(report)]
    if report.profile_path:
        parts += [
            "",
            f"Where the relay's CPU goes (py-spy, every thread) is in "
            f"`{report.profile_path}` (collapsed stacks beside it, `relay-profile.folded`).",
        ]
    if report.stage_runs:
        parts += [
            "",
            "### The relay's pipeline, stage by stage",
            "",
            "The relay's own parts cut after each stage (`bench/stages.py`), each run on the same "
            "backlog beside SecantusDB and the 0 ms sink; CPU of the whole process per change.",
            "",
            stage_table(report.stage_runs),
        ]
    if report.hot_path:
        parts += [
            "",
            "### The relay's steps in isolation",
            "",
            "CPU per change in one process with no server (`bench/hot_path.py`), each step beside "
            "the library way it replaced; a request carries 10 changes.",
            "",
            report.hot_path,
        ]
    if report.function_runs:
        parts += ["", "## Functions", "", function_table(report.function_runs)]
        parts += ["", function_ratio_table(report.function_runs)]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(parts) + "\n"


def render_chart(report: BenchReport, path: Path) -> None:
    """Grouped bars: events/s by sink latency for raw, naive and relay (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = report.sink_latencies()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(VARIANTS)
    tallest = 1.0
    for index, variant in enumerate(VARIANTS):
        xs, heights = [], []
        for position, latency in enumerate(latencies):
            run = report.run(variant, latency)
            if run is not None and run.measured and run.events_per_s:
                xs.append(position + (index - 1) * width)
                heights.append(run.events_per_s)
        tallest = max([tallest, *heights])
        bars = axes.bar(xs, heights, width, label=_LABELS[variant])
        axes.bar_label(bars, labels=[f"{height:,.0f}" for height in heights], fontsize=8)
        missing = [
            position
            for position, latency in enumerate(latencies)
            if (run := report.run(variant, latency)) is None or not run.measured
        ]
        for position in missing:
            axes.text(
                position + (index - 1) * width, 1, NOT_MEASURED, rotation=90, ha="center",
                va="bottom", fontsize=7,
            )  # fmt: skip
    axes.set_xticks(range(len(latencies)), [f"sink {latency:g} ms" for latency in latencies])
    axes.set_yscale("log")
    # Head room above the bars for their labels and the legend (log scale: a factor).
    axes.set_ylim(bottom=1, top=tallest * 20)
    axes.set_ylabel("events/s (log scale)")
    axes.set_title("Change-stream forwarding throughput by PutEvents latency")
    axes.legend(loc="upper center", ncol=len(VARIANTS), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_results(report: BenchReport, directory: Path) -> dict[str, Path]:
    """Write results.md, results.json and throughput.png; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": directory / "results.md",
        "json": directory / "results.json",
        "chart": directory / "throughput.png",
    }
    paths["markdown"].write_text(render_markdown(report))
    paths["json"].write_text(json.dumps(asdict(report), indent=2) + "\n")
    render_chart(report, paths["chart"])
    return paths
