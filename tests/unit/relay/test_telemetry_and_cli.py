"""Metrics as EMF, the health file and its check, and the command line's error handling."""

import json
import time

from relay import cli
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
