"""A tiny end-to-end run of the harness: a few hundred changes through raw, naive (and the relay
when it is in the checkout), and the bare function handlers. Checks the pieces work together;
asserts nothing about speed."""

import pytest

from bench.figures import BenchReport
from bench.functions_bench import FunctionBenchConfig, run_function_bench
from bench.relay_bench import RelayBenchConfig, relay_available, run_relay_bench
from bench.report import write_results


@pytest.mark.slow
def test_quick_relay_bench_measures_every_variant_on_the_same_backlog(tmp_path):
    # GIVEN a small backlog and one sink latency
    config = RelayBenchConfig(
        events=300,
        sink_latencies_ms=(0.0,),
        naive_seconds=1.0,
        live_rate=100.0,
        live_seconds=0.5,
        profile=False,
        results_dir=tmp_path,
        rounds=2,
    )

    # WHEN the relay bench runs
    outcome = run_relay_bench(config, log=lambda message: None)

    # THEN raw read the whole backlog, the naive forwarded through the sink, and the relay was
    # measured or honestly marked
    runs = {run.variant: run for run in outcome.runs}
    assert outcome.source["changes"] == 300
    assert runs["raw"].measured
    assert runs["raw"].events == 300
    assert runs["raw"].latency_expected == 50
    assert len(runs["raw"].passes_per_s) == 3  # before the relay, after each of its 2 passes
    assert "median of 3 reads" in runs["raw"].note
    assert runs["naive"].measured
    assert runs["naive"].events > 0
    assert (runs["naive"].cpu_us_per_event or 0) > 0
    if relay_available():
        assert runs["relay"].measured or "failed" in runs["relay"].note
        if runs["relay"].measured:
            assert len(runs["relay"].passes_per_s) == 2
            assert "median of 2 passes" in runs["relay"].note
        # and the relay's parts, cut after each stage, read the whole backlog too
        assert [run.stage for run in outcome.stage_runs] == ["read", "encode", "batch", "send"]
        for run in outcome.stage_runs:
            assert run.measured, run.note
            assert run.events >= 300
            assert (run.cpu_us_per_event or 0) > 0
    else:
        assert not runs["relay"].measured
        assert "not in this checkout" in runs["relay"].note

    report = BenchReport("test", {}, 300, outcome.source, outcome.runs)
    paths = write_results(report, tmp_path)
    assert paths["chart"].stat().st_size > 0


def test_bare_function_handlers_are_measured_in_fresh_processes():
    config = FunctionBenchConfig(
        invocations=5, only=("bare boto3 SNS publish", "bare pymongo insert")
    )

    runs = run_function_bench(config, log=lambda message: None)

    assert [run.name for run in runs] == ["bare boto3 SNS publish", "bare pymongo insert"]
    for run in runs:
        assert run.measured, run.note
        assert (run.cold_init_ms or 0) > 0
        assert (run.warm_ms_per_event or 0) > 0
        assert (run.peak_rss_mib or 0) > 0
        assert run.invocations == 5
