"""The isolated hot-path measure: real changes, every step measured, a table that says so."""

from bson.raw_bson import RawBSONDocument

from bench.figures import BenchReport
from bench.hot_path import hot_path_table, measure_hot_path, sample_changes
from bench.report import render_markdown
from change_contract import decode_event, encode_change
from localdev.samples import lambda_event


def test_sample_changes_are_raw_inserts_and_updates_the_contract_accepts():
    changes = sample_changes(40)

    assert all(isinstance(change, RawBSONDocument) for change in changes)
    kinds = {change["operationType"] for change in changes}
    assert kinds == {"insert", "update"}
    decoded = decode_event(lambda_event(encode_change(changes[0]).entry))
    assert decoded.detail.full_document is not None
    assert decoded.detail.full_document["nombreProducto"]


def test_every_step_is_measured_beside_its_baseline_and_rendered():
    # GIVEN a tiny run
    steps = measure_hot_path(changes=30, rounds=1)

    # WHEN it is rendered into a report
    table = hot_path_table(steps)
    report = BenchReport(command="make bench", machine={}, events=0, hot_path=table)
    markdown = render_markdown(report)

    # THEN four steps, each with positive CPU on both sides, appear under their own heading
    assert [step.step.split()[0] for step in steps] == ["render", "render", "sign", "serialise"]
    assert steps[0].baseline == steps[1].relay == "pymongo decode + orjson"
    assert steps[0].baseline_us == steps[1].relay_us
    assert all(step.relay_us > 0 and step.baseline_us > 0 for step in steps)
    assert "### The relay's steps in isolation" in markdown
    assert table in markdown
