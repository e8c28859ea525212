"""The results table and chart: measured figures, ratios and verdicts, and never a number for
something that was not measured."""

from bench.figures import BenchReport, FunctionRun, RelayRun, StageRun, percentile
from bench.report import relay_table, render_markdown, stage_table, write_results


def _measured(variant: str, latency: float, rate: float, cpu: float) -> RelayRun:
    run = RelayRun(variant, latency, measured=True, events=1000, events_per_s=rate)
    run.cpu_us_per_event, run.peak_rss_mib = cpu, 80.0
    run.set_latencies([0.001 * n for n in range(1, 101)], expected=100)
    return run


def _report() -> BenchReport:
    report = BenchReport(command="make bench", machine={"cpus": "2"}, events=1000)
    report.relay_runs = [
        _measured("raw", 0, 10_000, 20),
        _measured("naive", 0, 100, 4000),
        _measured("relay", 0, 9_000, 50),
        _measured("raw", 25, 10_000, 20),
        _measured("naive", 25, 30, 4000),
        RelayRun("relay", 25, note="relay/ is not in this checkout yet"),
    ]
    report.function_runs = [
        FunctionRun("stock_alert", note="functions/stock_alert/app.py is not in this checkout yet"),
        FunctionRun("bare boto3 SNS publish", "stock_alert", True, 600.0, 20.0, 10.0, 70.0, 300),
    ]
    return report


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))

    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50, 99)
    assert percentile([], 0.5) is None


def test_ratios_are_measured_in_the_same_report():
    report = _report()

    assert report.ratio("relay", "raw", 0) == 0.9
    assert report.ratio("relay", "naive", 0) == 90.0
    assert report.ratio("relay", "naive", 25) is None


def test_unmeasured_runs_show_no_number_and_their_reason():
    table = relay_table(_report())

    line = next(row for row in table.splitlines() if row.startswith("| 25 ms | relay |"))
    assert "not measured" in line
    assert "not in this checkout yet" in line
    assert not any(character.isdigit() for character in line.split("|")[3])


def test_markdown_has_figures_ratios_verdicts_and_functions():
    text = render_markdown(_report())

    assert "| 0 ms | relay | 1,000 | 9,000 | 50.0 | 80.0 | 50.0 | 99.0 |" in text
    assert "| 0 ms | 0.90x | 90.00x | 50.0 |" in text
    assert ">= 0.8 of raw: met" in text
    assert "relay not measured" in text
    assert "| bare boto3 SNS publish | stock_alert | 600.0 | 20.0 | 10.00 | 70.0 | 300 |" in text
    assert "functions/stock_alert/app.py is not in this checkout yet" in text
    assert "| stock_alert | bare boto3 SNS publish | — | — |" in text


def test_a_missed_target_is_called_missed():
    report = _report()
    report.relay_runs[2].cpu_us_per_event = 75.0

    assert "CPU <= 60 µs: MISSED" in render_markdown(report)


def test_results_are_written_with_a_png_chart(tmp_path):
    paths = write_results(_report(), tmp_path)

    assert paths["chart"].read_bytes().startswith(b"\x89PNG")
    assert "## Relay" in paths["markdown"].read_text()
    assert '"relay_runs"' in paths["json"].read_text()


def test_a_long_multi_line_note_stays_in_its_row():
    report = _report()
    report.relay_runs[-1].note = "failed: x | y\n  Traceback\n" + "z" * 500

    line = next(
        row for row in relay_table(report).splitlines() if row.startswith("| 25 ms | relay")
    )

    assert line.endswith("… |")
    assert "failed: x / y Traceback" in line
    assert line.count("|") == 10


def test_functions_are_compared_with_their_bare_baseline():
    report = _report()
    report.function_runs[0] = FunctionRun("stock_alert", None, True, 1200.0, 40.0, 30.0, 90.0, 300)

    text = render_markdown(report)

    assert "| stock_alert | bare boto3 SNS publish | 2.0x | 3.0x |" in text


def test_a_quick_run_never_writes_over_the_quoted_results():
    from bench.cli import DEFAULT_RESULTS, parse_args

    quick, full = parse_args(["--quick"]), parse_args([])

    assert full.results_dir == DEFAULT_RESULTS
    assert quick.results_dir != DEFAULT_RESULTS
    assert (quick.events, full.events) == (300, 20_000)


def test_each_stage_shows_what_it_adds_to_the_one_before():
    runs = [
        StageRun("read", True, 1000, 9_000.0, 20.0),
        StageRun("encode", True, 1000, 8_000.0, 65.5),
        StageRun("batch", note="failed: no sink"),
        StageRun("send", True, 1000, 5_000.0, 130.0),
    ]

    rows = stage_table(runs).splitlines()[2:]

    assert rows[0].endswith("| 9,000 | 20.0 | — |")
    assert rows[1].endswith("| 8,000 | 65.5 | 45.5 |")
    # An unmeasured stage shows no figure, and the next one no difference to it
    assert "failed: no sink" in rows[2]
    assert rows[2].endswith("| — | — | — |")
    assert rows[3].endswith("| 5,000 | 130.0 | — |")


def test_the_stage_table_is_in_the_report_only_when_stages_ran():
    report = _report()
    assert "stage by stage" not in render_markdown(report)

    report.stage_runs = [StageRun("read", True, 1000, 9_000.0, 20.0)]

    assert "### The relay's pipeline, stage by stage" in render_markdown(report)


def test_repeated_passes_report_their_median_and_list_every_pass():
    run = RelayRun("relay", 0.0)
    assert run.passes_note("passes") == ""

    run.add_pass(12_000.0, 50.0)
    assert (run.events_per_s, run.cpu_us_per_event) == (12_000.0, 50.0)
    assert run.passes_note("passes") == ""  # one pass: nothing to say

    run.add_pass(9_000.0, 70.0)
    run.add_pass(15_000.0, 55.0)

    assert run.measured
    assert run.events_per_s == 12_000.0
    assert run.cpu_us_per_event == 55.0
    assert run.passes_note("passes") == "median of 3 passes (12,000, 9,000, 15,000/s)"


def test_an_even_number_of_passes_takes_the_mean_of_the_middle_two():
    run = RelayRun("raw", 0.0)
    for rate, cpu in ((10_000.0, 10.0), (14_000.0, 14.0)):
        run.add_pass(rate, cpu)

    assert (run.events_per_s, run.cpu_us_per_event) == (12_000.0, 12.0)
