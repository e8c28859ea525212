"""Relay settings: parsed once from the environment, every error naming its variable."""

import re
from pathlib import Path

import pytest

from reaction_runtime.env import ConfigError
from relay.settings import RelaySettings, SettingsError
from relay.stream import pipeline_for, watch_options
from tests.unit.relay.helpers import RELAY_ENV

BASE = RELAY_ENV


def settings(**changes: str | None) -> RelaySettings:
    env = dict(BASE)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return RelaySettings.from_env(env)


def test_only_the_required_variables_give_documented_defaults():
    parsed = settings()

    assert parsed.scope.level == "collection"
    assert parsed.full_document == "updateLookup"
    assert parsed.full_document_before_change == "off"
    assert parsed.batch_max_entries == 10
    assert parsed.max_request_bytes == 1_048_576
    assert parsed.on_history_lost == "fail"
    assert parsed.on_permanent_failure == "dlq"
    assert parsed.dlq_queue_url is None
    assert parsed.oversize_bucket is None
    assert parsed.lease_enabled is False
    assert parsed.checkpoint_store == "dynamodb"


@pytest.mark.parametrize(
    "missing",
    [
        "MONGODB_URI",
        "WATCH_DATABASE",
        "WATCH_COLLECTIONS",
        "EVENT_BUS_NAME",
        "EVENT_SOURCE",
        "CHECKPOINT_TABLE",
        "RELAY_ID",
    ],
)
def test_a_missing_required_variable_is_named(missing):
    with pytest.raises(SettingsError) as raised:
        settings(**{missing: None})

    assert raised.value.variable == missing
    assert str(raised.value).startswith(f"{missing}: ")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("MONGODB_URI", "http://x", "mongodb://"),
        ("RELAY_ID", "has space", "letters"),
        ("BATCH_MAX_ENTRIES", "11", "between 1 and 10"),
        ("BATCH_MAX_ENTRIES", "ten", "whole number"),
        ("MAX_IN_FLIGHT_REQUESTS", "0", "between"),
        ("MAX_REQUEST_BYTES", "100", "between"),
        ("ON_HISTORY_LOST", "ignore", "fail, restart"),
        ("ON_PERMANENT_FAILURE", "drop", "dlq, halt"),
        ("FULL_DOCUMENT_BEFORE_CHANGE", "yes", "off, whenAvailable, required"),
        ("CHECKPOINT_STORE", "redis", "dynamodb, mongodb"),
        ("LEASE_ENABLED", "maybe", "true or false"),
        ("LEASE_SECONDS", "1", "expected a number >= 3, got 1"),
        ("STOP_DEADLINE_SECONDS", "soon", "number"),
        ("WATCH_MATCH", "{not json", "not valid JSON"),
        ("WATCH_MATCH", "[1, 2]", "JSON object"),
        ("WATCH_COLLECTIONS", "a,a", "twice"),
        ("WATCH_COLLECTIONS", "system.views", "not a collection"),
        ("WATCH_DATABASE", "bad.name", "not a valid database name"),
        ("RETRY_MAX_SECONDS", "0.05", "RETRY_BASE_SECONDS"),
        ("PUT_EVENTS_CLIENT", "curl", "lean, botocore"),
        ("ON_INVALIDATE", "ignore", "restart, stop"),
        ("FULL_DOCUMENT", "UpdateLookup", "default, updateLookup, whenAvailable, required"),
        ("CHECKPOINT_INTERVAL_SECONDS", "301", "between 0.05 and 300, got 301"),
        ("MAX_REQUEST_BYTES", "100", "between 4096 and 16777216, got 100"),
        ("READ_BATCH_SIZE", "0", "between 1 and 100000, got 0"),
    ],
)
def test_a_malformed_value_is_named_with_the_expected_form(variable, value, fragment):
    with pytest.raises(SettingsError) as raised:
        settings(**{variable: value})

    assert raised.value.variable == variable
    assert fragment in str(raised.value)


def test_a_shared_reader_failure_is_a_settings_error_carrying_variable_and_problem():
    # WHEN a variable read by the shared layer's readers is malformed
    with pytest.raises(SettingsError) as raised:
        settings(MAX_AWAIT_TIME_MS="soon")

    # THEN the relay sees its own error type, still a ConfigError, with the layer's wording
    assert isinstance(raised.value, ConfigError)
    assert isinstance(raised.value.__cause__, ConfigError)
    assert raised.value.variable == "MAX_AWAIT_TIME_MS"
    assert raised.value.problem == "expected a whole number, got 'soon'"
    assert str(raised.value) == "MAX_AWAIT_TIME_MS: expected a whole number, got 'soon'"


def test_blank_optional_settings_take_their_defaults():
    parsed = settings(CHECKPOINT_DATABASE=" ", OVERSIZE_PREFIX="", HEALTH_FILE="", LEASE_ENABLED="")

    assert parsed.checkpoint_database == "relay"
    assert parsed.oversize_prefix == "relay-oversize/"
    assert parsed.health_file == "/tmp/relay-health.json"
    assert parsed.lease_enabled is False


def test_collections_without_a_database_are_refused():
    with pytest.raises(SettingsError) as raised:
        settings(WATCH_DATABASE="", WATCH_COLLECTIONS="productos")

    assert raised.value.variable == "WATCH_COLLECTIONS"


def test_mongodb_store_without_lease_needs_no_table():
    parsed = settings(CHECKPOINT_STORE="mongodb", CHECKPOINT_TABLE="")

    assert parsed.checkpoint_table is None


def test_lease_needs_the_table_even_with_the_mongodb_store():
    with pytest.raises(SettingsError) as raised:
        settings(CHECKPOINT_STORE="mongodb", CHECKPOINT_TABLE="", LEASE_ENABLED="true")

    assert raised.value.variable == "CHECKPOINT_TABLE"


def test_one_collection_watches_it_without_a_collection_filter():
    parsed = settings(WATCH_MATCH='{"operationType": {"$in": ["insert", "update"]}}')

    assert pipeline_for(parsed) == [{"$match": {"operationType": {"$in": ["insert", "update"]}}}]
    assert watch_options(parsed) == {
        "max_await_time_ms": 1000,
        "batch_size": 1000,
        "full_document": "updateLookup",
    }


def test_several_collections_watch_the_database_filtered_on_ns():
    parsed = settings(WATCH_COLLECTIONS="productos, pedidos")

    assert parsed.scope.level == "collections"
    stage = pipeline_for(parsed)[0]["$match"]["$or"]
    assert stage[0] == {"ns.coll": {"$in": ["productos", "pedidos"]}}
    assert stage[1] == {"operationType": {"$in": ["dropDatabase", "invalidate"]}}


def test_empty_collections_watch_the_database_and_empty_database_the_deployment():
    assert settings(WATCH_COLLECTIONS="").scope.level == "database"
    deployment = settings(WATCH_DATABASE="", WATCH_COLLECTIONS="")
    assert deployment.scope.level == "deployment"
    assert deployment.scope.database is None


def test_mongodb_checkpoints_inside_the_watched_scope_are_filtered_out():
    # GIVEN checkpoints kept in a collection the deployment-wide stream would see
    parsed = settings(
        WATCH_DATABASE="",
        WATCH_COLLECTIONS="",
        CHECKPOINT_STORE="mongodb",
        CHECKPOINT_DATABASE="ops",
        CHECKPOINT_COLLECTION="ckpt",
    )

    # THEN the pipeline excludes that namespace, so a checkpoint write is never a change to send
    assert pipeline_for(parsed) == [{"$match": {"$nor": [{"ns.db": "ops", "ns.coll": "ckpt"}]}}]


def test_pre_images_and_full_document_default_are_passed_through():
    parsed = settings(FULL_DOCUMENT="default", FULL_DOCUMENT_BEFORE_CHANGE="whenAvailable")

    assert watch_options(parsed) == {
        "max_await_time_ms": 1000,
        "batch_size": 1000,
        "full_document_before_change": "whenAvailable",
    }


def test_every_variable_the_relay_reads_is_in_the_readme_table():
    # GIVEN every environment variable name the settings parser reads
    root = Path(__file__).resolve().parents[3]
    source = (root / "relay" / "settings.py").read_text()
    read = set(re.findall(r'(?:env_\w+\(|_choice\(\s*env,\s*)\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"MONGODB_URI", "READ_BATCH_SIZE", "MAX_IN_FLIGHT_REQUESTS"} <= read

    # THEN each has a row in the README's configuration tables
    readme = (root / "README.md").read_text()
    missing = sorted(name for name in read if f"| `{name}` |" not in readme)
    assert missing == []
