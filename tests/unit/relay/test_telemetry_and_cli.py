"""Metrics as EMF, the health file and its check, and the command line's error handling."""

import json
import time
from types import SimpleNamespace

import pytest

from relay import cli
from relay.service import write_health
from relay.telemetry import HealthFile, MetricsEmitter, Stats, check_health


def test_metrics_are_emitted_as_one_emf_document_with_the_relay_id(capsys):
    # GIVEN counters from two batches and a retry
    stats = Stats()
    stats.batch(10, lag_s=0.5)
    stats.batch(6, lag_s=1.5)
    stats.add("Retries", 2)
    emitter = MetricsEmitter(
        stats, namespace="MongoChangeReactions", service="relay", relay_id="r1"
    )

    # WHEN they are emitted
    emitter.emit()

    # THEN one EMF line carries the documented names, summed, with the batch size averaged
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "MongoChangeReactions"
    assert ["RelayId", "service"] in directive["Dimensions"]
    assert emf["RelayId"] == "r1"
    assert emf["EventsForwarded"] == [16.0]
    assert emf["PutEventsRequests"] == [2.0]
    assert emf["Retries"] == [2.0]
    assert emf["BatchSize"] == [8.0]
    assert emf["LagSeconds"] == [1.5]
    assert stats.drain() == {}  # counters restart after each emit


def test_the_health_check_accepts_a_fresh_file_in_a_healthy_state(tmp_path):
    path = tmp_path / "health.json"
    HealthFile(str(path)).write("streaming", relayId="r1")

    healthy, reason = check_health(str(path), max_age_s=60)

    assert healthy, reason


def test_the_health_check_refuses_a_stale_or_failed_or_missing_file(tmp_path):
    path = tmp_path / "health.json"
    HealthFile(str(path)).write("streaming")
    assert not check_health(str(path), max_age_s=60, now=time.time() + 120)[0]

    HealthFile(str(path)).write("stalled")
    assert not check_health(str(path), max_age_s=60)[0]

    assert not check_health(str(tmp_path / "missing.json"), max_age_s=60)[0]


def test_health_command_exit_codes(tmp_path, capsys):
    path = tmp_path / "health.json"
    env = {"HEALTH_FILE": str(path), "HEALTH_MAX_AGE_SECONDS": "30"}
    assert cli.main(["health"], env) == 1

    HealthFile(str(path)).write("standby")

    assert cli.main(["health"], env) == 0


def test_run_with_a_configuration_error_names_the_variable_and_exits_2(capsys):
    code = cli.main(["run"], {"MONGODB_URI": "mongodb://x"})

    assert code == 2
    assert "WATCH_DATABASE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("state", "heartbeat_age_s", "answer_age_s", "written"),
    [
        ("streaming", 120, 120, "stalled"),
        ("streaming", 120, 1, "streaming"),  # a PutEvents answer is activity
        ("streaming", 1, None, "streaming"),
        ("standby", 120, None, "standby"),  # only the working state can stall
    ],
)
def test_the_health_file_says_stalled_only_for_work_with_no_recent_activity(
    tmp_path, state, heartbeat_age_s, answer_age_s, written
):
    now = time.monotonic()
    stats = Stats()
    stats.add("EventsForwarded", 3)
    forwarder = None if answer_age_s is None else SimpleNamespace(last_activity=now - answer_age_s)
    path = tmp_path / "health.json"

    write_health(
        HealthFile(str(path)),
        state,
        working_state="streaming",
        heartbeat=now - heartbeat_age_s,
        forwarder=forwarder,  # type: ignore[arg-type]
        max_age_s=60,
        relay_id="r1",
        stats=stats,
    )

    content = json.loads(path.read_text())
    assert (content["state"], content["relayId"], content["EventsForwarded"]) == (written, "r1", 3)


def test_a_health_file_that_cannot_be_written_is_logged_not_raised(tmp_path, monkeypatch):
    warnings: list[tuple[str, dict]] = []
    recorder = SimpleNamespace(warning=lambda message, **fields: warnings.append((message, fields)))
    monkeypatch.setattr("relay.service.logger", recorder)
    (tmp_path / "a-file").write_text("")
    unwritable = HealthFile(str(tmp_path / "a-file" / "health.json"))  # its folder is a file

    write_health(
        unwritable,
        "streaming",
        working_state="streaming",
        heartbeat=time.monotonic(),
        forwarder=None,
        max_age_s=60,
        relay_id="r1",
        stats=Stats(),
    )

    [(message, fields)] = warnings
    assert message == "health file not written"
    assert fields["path"] == str(tmp_path / "a-file" / "health.json")
