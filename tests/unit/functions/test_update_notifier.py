"""The update notifier handler, invoked in-process against moto: what it publishes, and when not."""

import contextlib
import datetime as dt
import json
import threading
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from bson import Decimal128, ObjectId
from hypothesis import HealthCheck, given, settings
from moto.sns.models import sns_backends

from change_contract import ContractError, encode_change
from localdev.samples import (
    ACCOUNT,
    BUS_NAME,
    LECHE,
    REGION,
    change,
    lambda_event,
    product,
    update_description,
)
from reaction_runtime import ConfigError, DownstreamError
from tests.unit.functions.conftest import (
    EVENTS_DIR,
    emitted_metrics,
    malformed_details,
    read_event,
)
from update_notifier import UpdateNotifierSettings, render_value

TOPIC = "changes"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC}"

# What each sample in events/ makes the notifier do (default settings): outcome, changedFields.
EXPECTED: dict[str, tuple[str, list[str] | None]] = {
    "insert": ("skipped", None),
    "insert-low-stock": ("skipped", None),
    "update-low-stock": ("notified", ["cantidad", "updatedBy"]),
    "update-low-stock-replayed": ("notified", ["cantidad", "updatedBy"]),
    "update-low-stock-no-pre-image": ("notified", ["cantidad", "updatedBy"]),
    "update-out-of-stock": ("notified", ["cantidad", "updatedBy"]),
    "update-restock": ("notified", ["cantidad", "updatedBy"]),
    "update-price-change": ("notified", ["precio", "updatedBy"]),
    "update-field-removed": ("notified", ["descripcion", "etiquetas"]),
    "update-in-transaction": ("notified", ["cantidad", "updatedBy"]),
    "replace": ("skipped", None),
    "delete": ("skipped", None),
    "delete-with-pre-image": ("skipped", None),
    "drop": ("skipped", None),
    "invalidate": ("skipped", None),
    "backfill-low-stock": ("skipped", None),
}
SAMPLES = sorted(path.stem for path in EVENTS_DIR.glob("*.json") if path.stem != "env")


@pytest.fixture
def changes_env(aws, monkeypatch):
    """The notifier's settings, its topic and an SQS inbox subscribed without raw delivery."""
    monkeypatch.setenv("CHANGES_TOPIC_ARN", TOPIC_ARN)
    monkeypatch.delenv("NOTIFY_ON_REPLACE", raising=False)
    sns = boto3.client("sns")
    sns.create_topic(Name=TOPIC)
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="changes-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=TOPIC_ARN,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    return queue_url


@pytest.fixture
def app(changes_env, load_app):
    return load_app("update_notifier")


def published() -> list[dict[str, Any]]:
    topic = sns_backends[ACCOUNT][REGION].topics.get(TOPIC_ARN)
    if topic is None:
        return []
    return [
        {"texts": json.loads(message), "subject": subject, "attributes": attributes}
        for _, message, subject, attributes, _ in topic.sent_notifications
    ]


def update_event(
    seconds: int,
    updated: dict[str, Any] | None = None,
    removed: list[str] | None = None,
    *,
    before: dict[str, Any] | None = None,
    operation: str = "update",
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"fullDocument": after or product(LECHE, "Leche entera", 25)}
    if operation == "update":
        fields["updateDescription"] = update_description(updated, removed)
    if before is not None:
        fields["fullDocumentBeforeChange"] = before
    document = change(operation, seconds, document_id=LECHE, **fields)
    return lambda_event(encode_change(document, bus_name=BUS_NAME, fast=False).entry)


# --- every sample ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_event(app, lambda_context, name):
    event = read_event(name)

    if name == "malformed-not-a-change":
        with pytest.raises(ContractError):
            app.handler(event, lambda_context)
        assert published() == []
        return

    assert name in EXPECTED, f"add the expected notifier outcome of events/{name}.json"
    outcome, fields = EXPECTED[name]

    result = app.handler(event, lambda_context)

    assert result["outcome"] == outcome
    assert result.get("changedFields") == fields
    assert len(published()) == (1 if outcome == "notified" else 0)


def test_update_with_pre_image_shows_old_and_new_values(app, lambda_context, changes_env):
    # GIVEN a price change whose event carries the pre-image
    event = read_event("update-price-change")

    # WHEN handled
    app.handler(event, lambda_context)

    # THEN one publish: readable default and email texts, old -> new for each changed field
    (message,) = published()
    text = (
        "Updated clase.productos document 6750a1f0c2b4a1e0f0a1b001 at 2026-12-03 12:13:40 UTC.\n"
        "\n"
        "- precio: 1.15 -> 1.25\n"
        '- updatedBy: "ana" -> "marta"\n'
        "\n"
        f"Event: {event['detail']['eventId']}\n"
    )
    assert message["texts"]["default"] == text
    assert message["texts"]["email"] == text
    assert message["subject"] == "Updated productos 6750a1f0c2b4a1e0f0a1b001: precio, updatedBy"
    assert message["attributes"] == {
        "collection": {"Type": "String", "Value": "productos"},
        "operationType": {"Type": "String", "Value": "update"},
        "changedFields": {"Type": "String.Array", "Value": '["precio", "updatedBy"]'},
    }

    # AND programs subscribed through SQS get the same change as JSON
    sqs = boto3.client("sqs")
    (delivered,) = sqs.receive_message(QueueUrl=changes_env)["Messages"]
    body = json.loads(delivered["Body"])
    assert body["Subject"] == message["subject"]
    assert body["MessageAttributes"]["changedFields"]["Value"] == '["precio", "updatedBy"]'
    document = json.loads(body["Message"])
    assert document["changes"] == [
        {
            "field": "precio",
            "kind": "updated",
            "new": {"$numberDecimal": "1.25"},
            "old": {"$numberDecimal": "1.15"},
        },
        {"field": "updatedBy", "kind": "updated", "new": "marta", "old": "ana"},
    ]
    assert document["changedFields"] == ["precio", "updatedBy"]
    assert document["documentId"] == "6750a1f0c2b4a1e0f0a1b001"
    assert document["time"] == "2026-12-03T12:13:40.123000Z"
    assert document["hasPreImage"] is True


def test_removed_fields_and_truncated_arrays_without_pre_image(app, lambda_context):
    event = read_event("update-field-removed")

    app.handler(event, lambda_context)

    (message,) = published()
    assert message["texts"]["default"] == (
        "Updated clase.productos document 6750a1f0c2b4a1e0f0a1b005 at 2026-12-03 12:13:41 UTC.\n"
        "\n"
        "- descripcion: removed\n"
        "- etiquetas: array truncated to 1 elements\n"
        "\n"
        "Old values are not shown: the collection has no pre-images enabled.\n"
        "\n"
        f"Event: {event['detail']['eventId']}\n"
    )
    machine = json.loads(message["texts"]["sqs"])
    assert machine["changes"] == [
        {"field": "descripcion", "kind": "removed"},
        {"field": "etiquetas", "kind": "truncated", "newSize": 1},
    ]


def test_new_values_only_without_pre_image(app, lambda_context):
    app.handler(read_event("update-low-stock-no-pre-image"), lambda_context)

    (message,) = published()
    assert '- cantidad: 9\n- updatedBy: "caja-03"\n' in message["texts"]["default"]


def test_dotted_paths_added_and_removed_fields_with_pre_image(app, lambda_context):
    # GIVEN a nested field changed, a field added and one removed, with the pre-image
    before = product(LECHE, "Leche entera", 25, medidas={"alto": 20, "ancho": 7}, nota="x")
    event = update_event(5, {"medidas.alto": 22, "origen": "Asturias"}, ["nota"], before=before)

    app.handler(event, lambda_context)

    (message,) = published()
    assert (
        '- medidas.alto: 20 -> 22\n- origen: added, "Asturias"\n- nota: removed (was "x")\n'
    ) in message["texts"]["default"]
    assert message["attributes"]["changedFields"]["Value"] == '["medidas", "origen", "nota"]'


# --- what is not notified -----------------------------------------------------------------------


def test_update_that_changes_nothing_is_skipped(app, lambda_context, capsys):
    # GIVEN an update whose only "new" value equals the pre-image, and an empty update
    before = product(LECHE, "Leche entera", 25)
    same = update_event(5, {"cantidad": 25}, before=before)
    empty = update_event(6)

    # WHEN handled THEN neither is published, and both are counted
    assert app.handler(same, lambda_context)["reason"] == "no change"
    assert app.handler(empty, lambda_context)["reason"] == "no change"
    assert published() == []
    assert emitted_metrics(capsys.readouterr().out)["NoOpChanges"] == 2


def test_type_change_with_equal_value_is_a_change(app, lambda_context):
    before = product(LECHE, "Leche entera", 25)
    event = update_event(5, {"cantidad": 25.0}, before=before)

    assert app.handler(event, lambda_context)["outcome"] == "notified"
    assert "- cantidad: 25 -> 25.0\n" in published()[0]["texts"]["default"]


def test_replace_is_notified_only_when_enabled(changes_env, load_app, lambda_context, monkeypatch):
    # GIVEN NOTIFY_ON_REPLACE on
    monkeypatch.setenv("NOTIFY_ON_REPLACE", "true")
    app = load_app("update_notifier")

    # WHEN the replace sample (no pre-image) and a replace with a pre-image are handled
    app.handler(read_event("replace"), lambda_context)
    before = product(LECHE, "Leche entera", 25, precio=Decimal128("1.15"), nota="vieja")
    after = product(LECHE, "Leche desnatada", 25, precio=Decimal128("1.15"), origen="León")
    app.handler(update_event(7, operation="replace", before=before, after=after), lambda_context)

    # THEN the first lists the new document's fields, the second old -> new per field
    first, second = published()
    assert first["attributes"]["operationType"]["Value"] == "replace"
    assert first["subject"].startswith("Replaced productos 6750a1f0c2b4a1e0f0a1b003: ")
    assert '- nombreProducto: "Arroz integral"\n' in first["texts"]["default"]
    assert (
        '- nombreProducto: "Leche entera" -> "Leche desnatada"\n'
        '- origen: added, "León"\n'
        '- nota: removed (was "vieja")\n'
    ) in second["texts"]["default"]
    assert second["attributes"]["changedFields"]["Value"] == '["nombreProducto", "origen", "nota"]'


def test_identical_replace_is_skipped(changes_env, load_app, lambda_context, monkeypatch):
    monkeypatch.setenv("NOTIFY_ON_REPLACE", "true")
    app = load_app("update_notifier")
    document = product(LECHE, "Leche entera", 25)

    event = update_event(7, operation="replace", before=document, after=document)

    assert app.handler(event, lambda_context)["reason"] == "no change"


def test_shrunk_update_is_still_notified(app, lambda_context):
    # GIVEN an update the relay had to shrink (its update description was left out)
    document = change(
        "update",
        9,
        document_id=LECHE,
        fullDocument=product(LECHE, "Leche entera", 25),
        updateDescription=update_description({"cantidad": 25}),
    )
    shrunk = encode_change(document, bus_name=BUS_NAME, omit=["updateDescription"], fast=False)

    # WHEN handled THEN a notification says so, without a changedFields attribute
    result = app.handler(lambda_event(shrunk.entry), lambda_context)

    assert result["outcome"] == "notified"
    (message,) = published()
    assert "too large to include" in message["texts"]["default"]
    assert "changedFields" not in message["attributes"]


def test_missing_topic_setting_fails_at_cold_start(changes_env, load_app, monkeypatch):
    monkeypatch.delenv("CHANGES_TOPIC_ARN")
    with pytest.raises(ConfigError, match="CHANGES_TOPIC_ARN: is required"):
        load_app("update_notifier")


# --- duplicates, order, failures ----------------------------------------------------------------


def test_same_event_twice_notifies_once(app, lambda_context):
    event = read_event("update-price-change")

    assert app.handler(event, lambda_context) == app.handler(event, lambda_context)
    assert len(published()) == 1


def test_concurrent_duplicates_notify_once(app, lambda_context):
    event = read_event("update-field-removed")
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait(timeout=10)
        # A delivery told "in progress" is retried by the platform and gets the stored outcome.
        with contextlib.suppress(IdempotencyAlreadyInProgressError):
            app.handler(event, lambda_context)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(published()) == 1


def test_out_of_order_updates_each_describe_their_own_change(app, lambda_context):
    # GIVEN two updates delivered newest first
    older = update_event(10, {"cantidad": 20}, before=product(LECHE, "Leche entera", 25))
    newer = update_event(11, {"cantidad": 15}, before=product(LECHE, "Leche entera", 20))

    app.handler(newer, lambda_context)
    app.handler(older, lambda_context)

    # THEN each notification states its own values and commit time, so order is recoverable
    texts = [message["texts"]["default"] for message in published()]
    assert "- cantidad: 20 -> 15\n" in texts[0]
    assert "12:13:31 UTC" in texts[0]
    assert "- cantidad: 25 -> 20\n" in texts[1]
    assert "12:13:30 UTC" in texts[1]


def test_publish_failure_is_raised_and_retried(app, lambda_context):
    event = read_event("update-price-change")
    boto3.client("sns").delete_topic(TopicArn=TOPIC_ARN)

    with pytest.raises(DownstreamError):
        app.handler(event, lambda_context)

    boto3.client("sns").create_topic(Name=TOPIC)
    assert app.handler(event, lambda_context)["outcome"] == "notified"
    assert len(published()) == 1


def test_replayed_update_says_so(app, lambda_context):
    app.handler(read_event("update-low-stock-replayed"), lambda_context)

    (message,) = published()
    assert "Re-delivered from the event archive (replay-2026-12-03)." in message["texts"]["email"]
    assert json.loads(message["texts"]["sqs"])["replayName"] == "replay-2026-12-03"


# --- values and limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal128("1.25"), "1.25"),
        (ObjectId("6750a1f0c2b4a1e0f0a1b001"), "6750a1f0c2b4a1e0f0a1b001"),
        (dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC), "2026-12-03T12:00:00+00:00"),
        ("Café", '"Café"'),
        ([1, 2], "[1, 2]"),
        ({"a": None}, '{"a": null}'),
    ],
)
def test_values_render_readably(value, text):
    assert render_value(value) == text


def test_large_update_stays_bounded(app, lambda_context):
    # GIVEN an update of 80 fields with long values
    updated = {f"campo{index:02d}": "x" * 5000 for index in range(80)}
    event = update_event(5, updated)

    app.handler(event, lambda_context)

    # THEN the text lists 50 fields, cuts long values, and the JSON marks values left out
    (message,) = published()
    assert "- and 30 more fields\n" in message["texts"]["default"]
    assert len(message["texts"]["default"]) < 20_000
    machine = json.loads(message["texts"]["sqs"])
    assert machine["changesOmitted"] is True
    assert machine["changes"][0]["new"] == {"omitted": "too large", "bytes": 5002}
    assert len(message["subject"]) < 100


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(detail=malformed_details())
def test_malformed_details_give_a_clear_error_and_publish_nothing(app, lambda_context, detail):
    event = read_event("update-price-change")
    event["detail"] = detail

    with pytest.raises(ContractError) as raised:
        app.handler(event, lambda_context)

    assert str(raised.value).startswith("change event")
    assert published() == []


def test_sam_local_env_file_holds_valid_settings():
    env = json.loads((EVENTS_DIR / "env.json").read_text(encoding="utf-8"))
    parsed = UpdateNotifierSettings.from_env(env["UpdateNotifierFunction"])

    assert parsed.topic_arn.startswith("arn:aws:sns:")
    assert parsed.notify_on_replace is False


def test_huge_update_still_fits_one_sns_publish(app, lambda_context):
    # GIVEN 400 fields with very long names (2 KB each) and long old and new values
    names = [f"{'atributo_muy_largo_' * 105}{index:03d}" for index in range(400)]
    before = product(LECHE, "Leche entera", 25, **dict.fromkeys(names, "a" * 3000))
    event = update_event(5, dict.fromkeys(names, "b" * 3000), before=before)

    # WHEN handled
    assert app.handler(event, lambda_context)["outcome"] == "notified"

    # THEN the single publish is within SNS's 256 KiB for body and attributes together
    (message,) = published()
    body = json.dumps(message["texts"], ensure_ascii=False).encode("utf-8")
    attributes = sum(
        len(name) + len(value["Type"]) + len(value["Value"].encode("utf-8"))
        for name, value in message["attributes"].items()
    )
    assert len(body) + attributes <= 262_144
    machine = json.loads(message["texts"]["sqs"])
    assert machine["changesOmitted"] is True
    assert 0 < len(machine["changes"]) < 50
