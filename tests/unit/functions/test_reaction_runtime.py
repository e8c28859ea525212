"""The shared runtime: settings readers, SNS text limits, idempotency and the error policy."""

import json
import threading
import time
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.models.table import Table as MotoTable

from change_contract import ChangeEvent, ClusterTime, ContractError
from reaction_runtime import (
    SMS_MAX_BYTES,
    Clients,
    ConfigError,
    DownstreamError,
    IdempotencySettings,
    ReactionRuntime,
    SnsMessage,
    SnsPublisher,
    cluster_time_number,
    cluster_time_text,
    env_bool,
    env_csv,
    env_enum,
    env_int,
    env_optional,
    env_str,
    fit_bytes,
    observability,
    subject_line,
)
from reaction_runtime.env import env_float, env_present
from reaction_runtime.idempotency import idempotency_config
from tests.unit.functions.conftest import IDEMPOTENCY_TABLE, create_idempotency_table, read_event

# --- settings readers -------------------------------------------------------------------------


def test_required_setting_names_the_variable():
    with pytest.raises(ConfigError, match="ALERT_TOPIC_ARN: is required"):
        env_str("ALERT_TOPIC_ARN", environ={"ALERT_TOPIC_ARN": "  "})


def test_required_setting_error_carries_name_and_problem():
    with pytest.raises(ConfigError) as raised:
        env_str("RELAY_ID", environ={})

    assert raised.value.name == "RELAY_ID"
    assert raised.value.problem == "is required and must not be empty"


def test_present_setting_may_be_blank_but_not_unset():
    assert env_present("WATCH_DATABASE", environ={"WATCH_DATABASE": "  "}) == ""
    assert env_present("WATCH_DATABASE", environ={"WATCH_DATABASE": " clase "}) == "clase"
    with pytest.raises(ConfigError, match=r"WATCH_DATABASE: is required \(it may be set empty\)"):
        env_present("WATCH_DATABASE", environ={})


def test_text_setting_default_and_value():
    assert env_str("X", "d", environ={}) == "d"
    assert env_str("X", "d", environ={"X": " v "}) == "v"
    assert env_optional("X", environ={"X": ""}) is None


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("No", False), ("1", True)])
def test_bool_setting(raw, expected):
    assert env_bool("FLAG", not expected, environ={"FLAG": raw}) is expected


def test_bool_setting_rejects_other_words():
    with pytest.raises(ConfigError, match="ALERT_ON_REPLAY: expected true or false, got 'si'"):
        env_bool("ALERT_ON_REPLAY", False, environ={"ALERT_ON_REPLAY": "si"})


def test_int_setting_checks_form_and_minimum():
    assert env_int("N", 10, environ={}) == 10
    with pytest.raises(ConfigError, match="LOW_STOCK_THRESHOLD: expected a whole number"):
        env_int("LOW_STOCK_THRESHOLD", 10, environ={"LOW_STOCK_THRESHOLD": "diez"})
    with pytest.raises(ConfigError, match="N: expected a number >= 0, got -1"):
        env_int("N", 1, minimum=0, environ={"N": "-1"})


def test_int_setting_checks_a_maximum_and_both_bounds():
    assert env_int("N", 8, minimum=1, maximum=64, environ={"N": "64"}) == 64
    with pytest.raises(ConfigError, match="N: expected a number <= 10, got 11"):
        env_int("N", 1, maximum=10, environ={"N": "11"})
    with pytest.raises(ConfigError, match="BATCH: expected a number between 1 and 10, got 0"):
        env_int("BATCH", 10, minimum=1, maximum=10, environ={"BATCH": "0"})


def test_int_bounds_print_whole():
    with pytest.raises(ConfigError, match="between 4096 and 16777216, got 100"):
        env_int("B", 4096, minimum=4096, maximum=16_777_216, environ={"B": "100"})


def test_float_setting_checks_form_and_bounds():
    assert env_float("S", 1.5, environ={}) == 1.5
    assert env_float("S", 1.5, minimum=0.05, maximum=300, environ={"S": " 0.05 "}) == 0.05
    assert env_float("S", 1.5, minimum=0.1, environ={"S": "1e3"}) == 1000.0
    with pytest.raises(ConfigError, match="S: expected a number, got 'soon'"):
        env_float("S", 1.5, environ={"S": "soon"})
    with pytest.raises(ConfigError, match="S: expected a number >= 3, got 1"):
        env_float("S", 30.0, minimum=3.0, environ={"S": "1"})
    with pytest.raises(ConfigError, match=r"S: expected a number <= 0\.5, got 0\.75"):
        env_float("S", 0.1, maximum=0.5, environ={"S": "0.75"})
    with pytest.raises(ConfigError, match=r"S: expected a number between 0\.05 and 300, got 301"):
        env_float("S", 1.0, minimum=0.05, maximum=300, environ={"S": "301"})


def test_float_setting_refuses_nan_even_without_bounds():
    with pytest.raises(ConfigError, match="S: expected a number, got 'nan'"):
        env_float("S", 1.0, environ={"S": "nan"})


def test_enum_setting_can_require_the_exact_spelling():
    choices = ("default", "updateLookup")
    assert env_enum("F", choices, "default", ignore_case=False, environ={"F": "updateLookup"}) == (
        "updateLookup"
    )
    with pytest.raises(ConfigError, match="F: expected one of default, updateLookup, got 'u"):
        env_enum("F", choices, "default", ignore_case=False, environ={"F": "updatelookup"})


def test_enum_setting_ignores_case_and_lists_choices():
    assert env_enum("L", ("es", "en"), "es", environ={"L": "EN"}) == "en"
    with pytest.raises(ConfigError, match="ALERT_MODE: expected one of episode, every, got 'x'"):
        env_enum("ALERT_MODE", ("episode", "every"), "episode", environ={"ALERT_MODE": "x"})


def test_csv_setting_drops_blanks_and_duplicates():
    assert env_csv("F", ("a",), environ={}) == ("a",)
    assert env_csv("F", environ={"F": " a, ,b,a "}) == ("a", "b")


def test_idempotency_settings_keep_records_at_least_two_days_by_default():
    settings = IdempotencySettings.from_env({"IDEMPOTENCY_TABLE": "t"})
    config = idempotency_config(settings)

    assert settings.ttl_hours == 48
    assert config.expires_after_seconds == 48 * 3600
    assert config.event_key_jmespath == "detail.eventId"
    assert config.raise_on_no_idempotency_key


def test_idempotency_ttl_shorter_than_eventbridge_retries_is_refused():
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TTL_HOURS: expected a number >= 25"):
        IdempotencySettings.from_env({"IDEMPOTENCY_TABLE": "t", "IDEMPOTENCY_TTL_HOURS": "6"})


def test_idempotency_table_is_required():
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        IdempotencySettings.from_env({})


def test_observability_uses_service_and_namespace_settings():
    setup = observability("stock_alert", environ={})
    assert setup.service == "stock_alert"
    assert setup.metrics.namespace == "MongoChangeReactions"
    named = observability("x", environ={"POWERTOOLS_SERVICE_NAME": "svc"})
    assert named.service == "svc"


# --- SNS text limits ----------------------------------------------------------------------------


def test_subject_keeps_accents_and_drops_line_breaks():
    assert subject_line("Café\nmolido:\tbajo") == "Café molido: bajo"


@given(st.text())
def test_subject_is_always_valid_for_sns(text):
    subject = subject_line(text)
    assert len(subject) < 100
    assert not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in subject)


@given(st.text())
def test_sms_text_fits_140_bytes_on_a_character_boundary(text):
    fitted = fit_bytes(text, SMS_MAX_BYTES)
    assert len(fitted.encode("utf-8")) <= SMS_MAX_BYTES


def test_long_sms_is_cut_with_an_ellipsis():
    fitted = fit_bytes("ñ" * 200, SMS_MAX_BYTES)
    assert fitted.endswith("…")
    assert len(fitted.encode("utf-8")) <= SMS_MAX_BYTES


def test_message_request_uses_json_structure_and_typed_attributes():
    message = SnsMessage(
        texts={"default": "d", "email": "e"},
        subject="Asunto",
        attributes={"severity": "LOW_STOCK", "changedFields": ["cantidad", "precio"]},
    )
    request = message.request("arn:topic")

    assert json.loads(request["Message"]) == {"default": "d", "email": "e"}
    assert request["MessageStructure"] == "json"
    assert request["MessageAttributes"]["severity"] == {
        "DataType": "String",
        "StringValue": "LOW_STOCK",
    }
    assert request["MessageAttributes"]["changedFields"] == {
        "DataType": "String.Array",
        "StringValue": '["cantidad", "precio"]',
    }


def test_message_without_default_text_is_refused():
    with pytest.raises(ValueError, match="default"):
        SnsMessage(texts={"email": "e"}, subject="s", attributes={}).request("arn")


def test_publish_failure_becomes_a_downstream_error(aws):
    # GIVEN a topic that does not exist
    runtime_logger = observability("t", environ={}).logger
    client = boto3.client("sns")
    publisher = SnsPublisher(client, "arn:aws:sns:us-east-1:123456789012:missing", runtime_logger)
    message = SnsMessage(texts={"default": "d"}, subject="s", attributes={})

    # WHEN publishing THEN the failure is raised for retry, not swallowed
    with pytest.raises(DownstreamError, match=r"SNS publish to .*missing failed"):
        publisher.publish(message)


# --- ordering -------------------------------------------------------------------------------------

_times = st.builds(ClusterTime, t=st.integers(0, 2**32 - 1), i=st.integers(0, 2**32 - 1))


@given(_times, _times)
def test_cluster_time_keys_keep_the_order(first, second):
    assert (first.as_tuple() < second.as_tuple()) == (
        cluster_time_number(first) < cluster_time_number(second)
    )
    assert (first.as_tuple() < second.as_tuple()) == (
        cluster_time_text(first) < cluster_time_text(second)
    )


# --- the runtime: idempotency and error policy -------------------------------------------------


class RecordingAction:
    """Counts the events it acts on; can block to hold an event in progress."""

    def __init__(self, *, block: bool = False) -> None:
        self.calls: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._block = block
        self._lock = threading.Lock()

    def __call__(self, change: ChangeEvent) -> dict[str, Any]:
        with self._lock:
            self.calls.append(change.detail.event_id)
        self.entered.set()
        if self._block:
            assert self.release.wait(timeout=10), "test never released the action"
        return {"eventId": change.detail.event_id, "outcome": "acted"}


@pytest.fixture
def runtime(aws):
    created = ReactionRuntime("runtime_test")
    created.metrics.clear_metrics()
    yield created
    created.metrics.clear_metrics()


def _metric(runtime: ReactionRuntime, name: str) -> float:
    entry = runtime.metrics.metric_set.get(name)
    return 0 if entry is None else sum(entry["Value"])


def test_same_event_twice_acts_once(runtime, lambda_context):
    # GIVEN a valid change event
    event = read_event("update-low-stock")
    action = RecordingAction()

    # WHEN it is delivered twice
    first = runtime.handle(event, lambda_context, action)
    second = runtime.handle(event, lambda_context, action)

    # THEN the action ran once and the duplicate got the stored outcome
    assert action.calls == [event["detail"]["eventId"]]
    assert first == second == {"eventId": event["detail"]["eventId"], "outcome": "acted"}
    assert _metric(runtime, "DuplicateEvents") == 1


def test_idempotency_record_is_kept_48_hours(runtime, lambda_context):
    event = read_event("insert")
    runtime.handle(event, lambda_context, RecordingAction())

    items = boto3.client("dynamodb").scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert len(items) == 1
    assert items[0]["id"]["S"].startswith("runtime_test#")
    assert items[0]["status"]["S"] == "COMPLETED"
    ttl = int(items[0]["expiration"]["N"])
    assert 47 * 3600 < ttl - time.time() <= 48 * 3600


def test_duplicate_while_first_is_running_is_refused_for_retry(runtime, lambda_context):
    # GIVEN one delivery held in progress
    event = read_event("update-low-stock")
    action = RecordingAction(block=True)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(runtime.handle(event, lambda_context, action))
    )
    worker.start()
    assert action.entered.wait(timeout=10)

    # WHEN a second delivery of the same event arrives meanwhile
    with pytest.raises(IdempotencyAlreadyInProgressError):
        runtime.handle(event, lambda_context, action)
    action.release.set()
    worker.join(timeout=10)

    # THEN only the first acted, and a later retry gets its outcome without acting
    assert len(action.calls) == 1
    assert runtime.handle(event, lambda_context, action) == outcome
    assert len(action.calls) == 1


def test_concurrent_deliveries_act_once(runtime, lambda_context):
    # GIVEN eight threads delivering the same event at the same moment
    event = read_event("insert-low-stock")
    action = RecordingAction()
    start = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def deliver() -> None:
        start.wait(timeout=10)
        try:
            runtime.handle(event, lambda_context, action)
            result = "done"
        except IdempotencyAlreadyInProgressError:
            result = "in progress"
        with lock:
            results.append(result)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # THEN exactly one delivery acted; the others were duplicates or told to retry
    assert len(action.calls) == 1
    assert len(results) == 8


def test_invalid_event_is_logged_counted_and_raised(runtime, lambda_context, caplog):
    # GIVEN the malformed sample (its detail is not a change event)
    event = read_event("malformed-not-a-change")
    action = RecordingAction()

    # WHEN handled THEN the contract's error is raised for the platform's retries and DLQ
    with pytest.raises(ContractError, match="eventId"):
        runtime.handle(event, lambda_context, action)

    assert action.calls == []
    assert _metric(runtime, "InvalidEvents") == 1
    errors = [record for record in caplog.records if record.msg == "invalid change event"]
    assert len(errors) == 1
    assert "detail.eventId: Field required" in errors[0].reason
    assert boto3.client("dynamodb").scan(TableName=IDEMPOTENCY_TABLE)["Items"] == []


def test_invalid_event_log_names_the_event_id_when_it_has_one(runtime, lambda_context, caplog):
    event = read_event("insert")
    event["detail"]["operationType"] = "upsert"

    with pytest.raises(ContractError, match="operationType"):
        runtime.handle(event, lambda_context, RecordingAction())

    (error,) = [record for record in caplog.records if record.msg == "invalid change event"]
    assert error.event_id == event["detail"]["eventId"]
    assert "operationType" in error.reason


def test_failed_action_is_retried_and_then_acts(runtime, lambda_context):
    # GIVEN an action whose downstream fails the first time
    event = read_event("update-price-change")
    attempts: list[int] = []

    def flaky(change: ChangeEvent) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise DownstreamError("sns down")
        return {"outcome": "acted"}

    # WHEN the platform retries after the failure
    with pytest.raises(DownstreamError):
        runtime.handle(event, lambda_context, flaky)
    result = runtime.handle(event, lambda_context, flaky)

    # THEN the retry acted (the failed attempt left no idempotency record behind)
    assert result == {"outcome": "acted"}
    assert len(attempts) == 2
    assert _metric(runtime, "DownstreamErrors") == 1


def test_contract_error_raised_by_logic_follows_the_same_policy(runtime, lambda_context):
    event = read_event("update-price-change")

    def rejects(change: ChangeEvent) -> dict[str, Any]:
        raise ContractError("no quantity", event_id=change.detail.event_id)

    with pytest.raises(ContractError, match="no quantity"):
        runtime.handle(event, lambda_context, rejects)
    assert _metric(runtime, "InvalidEvents") == 1


def test_replay_name_is_available_to_the_logic(runtime, lambda_context):
    seen: list[str | None] = []

    def record(change: ChangeEvent) -> dict[str, Any]:
        seen.append(change.replay_name)
        return {}

    runtime.handle(read_event("update-low-stock-replayed"), lambda_context, record)
    assert seen == ["replay-2026-12-03"]


def test_oversized_outcome_is_stored_small(runtime, lambda_context):
    # GIVEN logic that returns a huge outcome (it would not fit a DynamoDB item)
    def verbose(change: ChangeEvent) -> dict[str, Any]:
        return {"outcome": "acted", "detail": "x" * 500_000}

    # WHEN handled twice THEN the action's effect is recorded and the duplicate is recognised
    first = runtime.handle(read_event("insert"), lambda_context, verbose)
    second = runtime.handle(read_event("insert"), lambda_context, verbose)

    assert first == second == {"outcome": "acted", "outcomeTruncated": True}
    assert _metric(runtime, "DuplicateEvents") == 1


def test_empty_attributes_are_left_out():
    message = SnsMessage(
        texts={"default": "d"}, subject="s", attributes={"a": "", "b": [], "c": "x"}
    )

    assert set(message.request("arn")["MessageAttributes"]) == {"c"}


def test_idempotency_store_failure_is_raised_before_acting(runtime, lambda_context):
    # GIVEN the idempotency table is gone
    boto3.client("dynamodb").delete_table(TableName=IDEMPOTENCY_TABLE)
    action = RecordingAction()

    # WHEN an event arrives THEN it is raised for retry, counted, and nothing was done
    with pytest.raises(IdempotencyPersistenceLayerError):
        runtime.handle(read_event("insert"), lambda_context, action)
    assert action.calls == []
    assert _metric(runtime, "DownstreamErrors") == 1


# --- a moto difference the fixtures work around -------------------------------------------------


def _conditional_puts(threads: int) -> list[str]:
    client = boto3.client("dynamodb")
    start = threading.Barrier(threads)
    results: list[str] = []

    def put(index: int) -> None:
        start.wait(timeout=10)
        try:
            client.put_item(
                TableName=IDEMPOTENCY_TABLE,
                Item={"id": {"S": "same"}, "writer": {"N": str(index)}},
                ConditionExpression="attribute_not_exists(id)",
            )
            results.append("written")
        except client.exceptions.ConditionalCheckFailedException:
            results.append("refused")

    workers = [threading.Thread(target=put, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
    return sorted(results)


def test_moto_conditional_put_is_not_atomic_across_threads(monkeypatch):
    """moto difference: it reads the current item, checks the condition, then writes, with no
    lock. Two threads paused between read and write both pass `attribute_not_exists`; DynamoDB
    would refuse one. The `aws` fixture serialises moto's item operations because of this."""
    original = MotoTable.get_item
    between_read_and_write = threading.Barrier(2)

    def read_then_pause(self, *args, **kwargs):
        current = original(self, *args, **kwargs)
        between_read_and_write.wait(timeout=10)
        return current

    monkeypatch.setattr(MotoTable, "get_item", read_then_pause)
    with mock_aws():
        create_idempotency_table()
        assert _conditional_puts(2) == ["written", "written"]


def test_aws_fixture_makes_conditional_puts_atomic(aws):
    assert _conditional_puts(8) == ["refused"] * 7 + ["written"]


def test_clients_are_made_once_and_can_be_swapped(aws):
    clients = Clients()
    first = clients.get("sns")

    assert clients.get("sns") is first
    assert first.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}

    stand_in = boto3.client("sns", region_name="eu-west-1")
    clients.override("sns", stand_in)
    assert clients.get("sns") is stand_in
