"""The stock alert handler, invoked in-process against moto: what it pages, and when it does not."""

import json
import threading
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from bson import Decimal128, Int64
from hypothesis import HealthCheck, given, settings
from moto.sns.models import sns_backends

from change_contract import ContractError, encode_change
from localdev.samples import (
    ACCOUNT,
    BUS_NAME,
    PAN,
    REGION,
    change,
    lambda_event,
    product,
    update_description,
)
from reaction_runtime import ConfigError, DownstreamError
from stock_alert import StockAlertSettings
from tests.unit.functions.conftest import (
    EVENTS_DIR,
    emitted_metrics,
    malformed_details,
    read_event,
)

TOPIC = "stock-alerts"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC}"
STATE_TABLE = "stock-alert-state"

# What each sample in events/ makes the stock alert do on a fresh state (default settings).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "insert": ("no alert", "OK"),
    "insert-low-stock": ("alerted", "LOW_STOCK"),
    "update-low-stock": ("alerted", "LOW_STOCK"),
    "update-low-stock-replayed": ("skipped", "LOW_STOCK"),
    "update-low-stock-no-pre-image": ("alerted", "LOW_STOCK"),
    "update-out-of-stock": ("alerted", "OUT_OF_STOCK"),
    "update-restock": ("no alert", "OK"),
    "update-price-change": ("no alert", "OK"),
    "update-field-removed": ("no alert", "OK"),
    "update-in-transaction": ("no alert", "OK"),
    "replace": ("alerted", "LOW_STOCK"),
    "delete": ("skipped", None),
    "delete-with-pre-image": ("skipped", None),
    "drop": ("skipped", None),
    "invalidate": ("skipped", None),
    "backfill-low-stock": ("alerted", "LOW_STOCK"),
}
SAMPLES = sorted(path.stem for path in EVENTS_DIR.glob("*.json") if path.stem != "env")


@pytest.fixture
def stock_env(aws, monkeypatch):
    """The stock alert's settings, topic, state table and an SQS inbox on the topic."""
    for name, value in {
        "ALERT_TOPIC_ARN": TOPIC_ARN,
        "ALERT_STATE_TABLE": STATE_TABLE,
        "ALERT_LANGUAGE": "es",
        "ALERT_MODE": "episode",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("THRESHOLD_FIELD", "ALERT_ON_REPLAY", "LOW_STOCK_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    sns = boto3.client("sns")
    sns.create_topic(Name=TOPIC)
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=TOPIC_ARN,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    boto3.client("dynamodb").create_table(
        TableName=STATE_TABLE,
        KeySchema=[{"AttributeName": "productKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "productKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return queue_url


@pytest.fixture
def app(stock_env, load_app):
    return load_app("stock_alert")


def published() -> list[dict[str, Any]]:
    """Every publish to the alert topic, as SNS received it (all protocol variants)."""
    topic = sns_backends[ACCOUNT][REGION].topics.get(TOPIC_ARN)
    if topic is None:
        return []
    return [
        {"texts": json.loads(message), "subject": subject, "attributes": attributes}
        for _, message, subject, attributes, _ in topic.sent_notifications
    ]


def inbox(queue_url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def quantity_event(
    seconds: int,
    quantity: Any,
    *,
    before: Any = None,
    increment: int = 1,
    operation: str = "update",
    **extra: Any,
) -> dict[str, Any]:
    """An update (or insert) of the sample product "Pan de molde" setting its quantity."""
    fields: dict[str, Any] = {"fullDocument": product(PAN, "Pan de molde", quantity, **extra)}
    if operation == "update":
        fields["updateDescription"] = update_description({"cantidad": quantity})
    if before is not None:
        fields["fullDocumentBeforeChange"] = product(PAN, "Pan de molde", before)
    document = change(operation, seconds, document_id=PAN, increment=increment, **fields)
    return lambda_event(encode_change(document, bus_name=BUS_NAME, fast=False).entry)


def levels(results: list[dict[str, Any]]) -> list[str]:
    return [item["attributes"]["severity"]["Value"] for item in results]


# --- every sample ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_event(app, lambda_context, name):
    # GIVEN a sample exactly as Lambda receives it, on a fresh state
    event = read_event(name)

    if name == "malformed-not-a-change":
        # WHEN it is not a change event THEN the contract error is raised and nothing is sent
        with pytest.raises(ContractError):
            app.handler(event, lambda_context)
        assert published() == []
        return

    assert name in EXPECTED, f"add the expected stock-alert outcome of events/{name}.json"
    outcome, level = EXPECTED[name]

    # WHEN handled
    result = app.handler(event, lambda_context)

    # THEN it pages exactly when expected
    assert result["outcome"] == outcome
    assert result.get("level") == level
    assert len(published()) == (1 if outcome == "alerted" else 0)


def test_low_stock_message_in_spanish(app, lambda_context, stock_env):
    # GIVEN a new product inserted with 4 units (threshold 10)
    event = read_event("insert-low-stock")

    # WHEN handled
    app.handler(event, lambda_context)

    # THEN one publish carries the default, email and SMS texts, a subject and the attributes
    (message,) = published()
    assert message["texts"] == {
        "default": (
            "Stock bajo: Café molido tiene 4 unidades (umbral 10). "
            "Producto 6750a1f0c2b4a1e0f0a1b004 en clase.productos, 2026-12-03 12:13:22 UTC."
        ),
        "email": (
            "Alerta de inventario: stock bajo.\n\n"
            "Producto: Café molido\n"
            "Cantidad: 4\n"
            "Umbral: 10\n"
            "Nivel: LOW_STOCK\n"
            "Colección: clase.productos\n"
            "Id del documento: 6750a1f0c2b4a1e0f0a1b004\n"
            "Fecha: 2026-12-03 12:13:22 UTC\n"
            f"Evento: {event['detail']['eventId']}\n"
        ),
        "sms": "Stock bajo (4, umbral 10): Café molido",
    }
    assert message["subject"] == "Stock bajo (4, umbral 10): Café molido"
    assert message["attributes"] == {
        "severity": {"Type": "String", "Value": "LOW_STOCK"},
        "collection": {"Type": "String", "Value": "productos"},
        "productId": {"Type": "String", "Value": "6750a1f0c2b4a1e0f0a1b004"},
    }
    assert len(message["texts"]["sms"].encode("utf-8")) <= 140

    # AND an SQS subscriber (raw delivery off) gets the default text, subject and attributes
    (delivered,) = inbox(stock_env)
    assert delivered["Message"] == message["texts"]["default"]
    assert delivered["Subject"] == "Stock bajo (4, umbral 10): Café molido"
    assert delivered["MessageAttributes"]["severity"] == {"Type": "String", "Value": "LOW_STOCK"}


def test_out_of_stock_message_in_english(stock_env, load_app, lambda_context, monkeypatch):
    monkeypatch.setenv("ALERT_LANGUAGE", "en")
    app = load_app("stock_alert")

    app.handler(read_event("update-out-of-stock"), lambda_context)

    (message,) = published()
    assert message["subject"] == "Out of stock (0, threshold 10): Pan de molde"
    assert message["texts"]["sms"] == "Out of stock (0, threshold 10): Pan de molde"
    assert message["texts"]["email"].startswith("Inventory alert: out of stock.\n\nProduct: Pan")
    assert message["attributes"]["severity"]["Value"] == "OUT_OF_STOCK"


def test_long_product_name_keeps_sms_and_subject_within_limits(app, lambda_context):
    name = "Turrón de Jijona artesanal extra suave, edición especial ñandú " * 5
    event = quantity_event(5, 2, operation="insert")
    event["detail"]["fullDocument"]["nombreProducto"] = name + "\nsegunda línea"

    app.handler(event, lambda_context)

    (message,) = published()
    assert len(message["texts"]["sms"].encode("utf-8")) <= 140
    assert message["texts"]["sms"].startswith("Stock bajo (2, umbral 10): Turrón de Jijona")
    assert len(message["subject"]) < 100
    assert "\n" not in message["subject"]


# --- once per episode ----------------------------------------------------------------------------


def test_one_alert_per_episode_without_pre_images(app, lambda_context):
    # GIVEN a product sold down, out, partly and fully restocked, and sold down again
    quantities = [12, 8, 5, 0, 3, 40, 7, 6]

    # WHEN each change arrives in order, without pre-images
    outcomes = [
        app.handler(quantity_event(second, quantity), lambda_context)["outcome"]
        for second, quantity in enumerate(quantities, start=1)
    ]

    # THEN it pages on entering the low zone, on reaching zero, and on falling again
    assert outcomes == [
        "no alert",
        "alerted",
        "no alert",
        "alerted",
        "no alert",
        "no alert",
        "alerted",
        "no alert",
    ]
    assert levels(published()) == ["LOW_STOCK", "OUT_OF_STOCK", "LOW_STOCK"]


def test_pre_image_decides_without_earlier_state(app, lambda_context):
    # GIVEN a change from 8 to 5 whose pre-image shows it was already low
    event = quantity_event(10, 5, before=8)

    # WHEN handled on an empty state THEN it does not page (the episode was already open)
    assert app.handler(event, lambda_context)["outcome"] == "no alert"
    assert published() == []


def test_late_event_cannot_reopen_an_episode(app, lambda_context):
    # GIVEN the product restocked to 40 at t=30, delivered first
    assert app.handler(quantity_event(30, 40), lambda_context)["outcome"] == "no alert"

    # WHEN an older sale (t=20, down to 8) arrives late, with or without a pre-image
    late = app.handler(quantity_event(20, 8), lambda_context)
    late_with_pre_image = app.handler(quantity_event(20, 8, before=12, increment=2), lambda_context)

    # THEN neither pages: the state already moved past them
    assert late["reason"] == late_with_pre_image["reason"] == "stale"
    assert published() == []


def test_out_of_order_sales_page_once(app, lambda_context):
    # GIVEN two sales into the low zone delivered newest first
    newer = quantity_event(20, 5)
    older = quantity_event(10, 8)

    # WHEN both are handled
    app.handler(newer, lambda_context)
    app.handler(older, lambda_context)

    # THEN exactly one page, about the newest state
    assert levels(published()) == ["LOW_STOCK"]
    assert "tiene 5 unidades" in published()[0]["texts"]["default"]


def test_every_mode_pages_each_low_change_without_state(
    stock_env, load_app, lambda_context, monkeypatch
):
    monkeypatch.setenv("ALERT_MODE", "every")
    monkeypatch.delenv("ALERT_STATE_TABLE")
    app = load_app("stock_alert")

    for second, quantity in enumerate([12, 8, 5, 0], start=1):
        app.handler(quantity_event(second, quantity), lambda_context)

    assert levels(published()) == ["LOW_STOCK", "LOW_STOCK", "OUT_OF_STOCK"]


def test_episode_mode_needs_the_state_table(stock_env, load_app, monkeypatch):
    monkeypatch.delenv("ALERT_STATE_TABLE")
    with pytest.raises(ConfigError, match="ALERT_STATE_TABLE: is required when ALERT_MODE"):
        load_app("stock_alert")


def test_missing_topic_setting_fails_at_cold_start(stock_env, load_app, monkeypatch):
    monkeypatch.delenv("ALERT_TOPIC_ARN")
    with pytest.raises(ConfigError, match="ALERT_TOPIC_ARN: is required"):
        load_app("stock_alert")


# --- replays and duplicates ---------------------------------------------------------------------


def test_replay_does_not_page_unless_told(stock_env, load_app, lambda_context, monkeypatch):
    app = load_app("stock_alert")
    result = app.handler(read_event("update-low-stock-replayed"), lambda_context)
    assert result["reason"] == "replay"
    assert published() == []

    monkeypatch.setenv("ALERT_ON_REPLAY", "true")
    told = load_app("stock_alert")
    event = quantity_event(40, 3, before=12)
    event["replay-name"] = "replay-2026-12-03"
    assert told.handler(event, lambda_context)["outcome"] == "alerted"
    (message,) = published()
    assert "Reenviado desde el archivo de eventos (replay-2026-12-03)." in message["texts"]["email"]


def test_same_event_twice_pages_once(app, lambda_context):
    event = read_event("update-low-stock-no-pre-image")

    first = app.handler(event, lambda_context)
    second = app.handler(event, lambda_context)

    assert first == second
    assert len(published()) == 1


def test_concurrent_duplicates_page_once(app, lambda_context):
    # GIVEN six deliveries of the same event released together
    event = read_event("insert-low-stock")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait(timeout=10)
        try:
            app.handler(event, lambda_context)
        except IdempotencyAlreadyInProgressError as error:
            errors.append(error)  # the platform retries these and finds the stored outcome

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # THEN one page was sent
    assert len(published()) == 1


def test_concurrent_different_sales_page_once(app, lambda_context):
    # GIVEN four different sales of one product into the low zone, handled at the same moment
    events = [quantity_event(10 + index, 8 - index) for index in range(4)]
    barrier = threading.Barrier(len(events))

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait(timeout=10)
        app.handler(event, lambda_context)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # THEN the conditional state write lets only one of them open the episode
    assert len(published()) == 1


# --- failures -------------------------------------------------------------------------------------


def test_failed_publish_is_retried_and_pages_once(app, lambda_context):
    # GIVEN the topic is gone when the alert is decided
    event = quantity_event(10, 8)
    boto3.client("sns").delete_topic(TopicArn=TOPIC_ARN)

    # WHEN handled THEN the failure is raised so Lambda retries
    with pytest.raises(DownstreamError, match="SNS publish"):
        app.handler(event, lambda_context)

    # WHEN the topic is back and the platform retries the same event
    boto3.client("sns").create_topic(Name=TOPIC)
    assert app.handler(event, lambda_context)["outcome"] == "alerted"

    # THEN one page went out and the episode is recorded as paged
    assert len(published()) == 1
    item = boto3.client("dynamodb").scan(TableName=STATE_TABLE)["Items"][0]
    assert "pendingAlertEvent" not in item
    assert item["level"] == {"S": "LOW_STOCK"}


def _fail_first_publish(app, lambda_context, event):
    boto3.client("sns").delete_topic(TopicArn=TOPIC_ARN)
    with pytest.raises(DownstreamError):
        app.handler(event, lambda_context)
    boto3.client("sns").create_topic(Name=TOPIC)


def test_page_owed_by_a_failed_event_is_sent_by_its_retry_after_newer_sales(app, lambda_context):
    # GIVEN a sale into the low zone whose publish failed
    first = quantity_event(10, 8)
    _fail_first_publish(app, lambda_context, first)

    # WHEN a newer sale (still low) is handled before the retry of the first
    newer = app.handler(quantity_event(11, 7), lambda_context)
    retried = app.handler(first, lambda_context)

    # THEN the newer sale does not page (the episode was open), the retry pays its debt: once
    assert newer["outcome"] == "no alert"
    assert retried["outcome"] == "alerted"
    assert levels(published()) == ["LOW_STOCK"]


def test_page_owed_is_dropped_when_the_product_was_restocked_meanwhile(app, lambda_context):
    first = quantity_event(10, 8)
    _fail_first_publish(app, lambda_context, first)

    app.handler(quantity_event(11, 40), lambda_context)
    retried = app.handler(first, lambda_context)

    assert retried["reason"] == "stale"
    assert published() == []


def test_newer_escalation_takes_over_an_owed_page(app, lambda_context):
    first = quantity_event(10, 8)
    _fail_first_publish(app, lambda_context, first)

    assert app.handler(quantity_event(11, 0), lambda_context)["outcome"] == "alerted"
    assert app.handler(first, lambda_context)["reason"] == "stale"
    assert levels(published()) == ["OUT_OF_STOCK"]


def test_state_table_failure_is_raised_for_retry(app, lambda_context):
    boto3.client("dynamodb").delete_table(TableName=STATE_TABLE)

    with pytest.raises(DownstreamError, match="alert state table"):
        app.handler(quantity_event(10, 8), lambda_context)
    assert published() == []


# --- quantities of every type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "level"),
    [
        (Int64(3), "LOW_STOCK"),
        (9.5, "LOW_STOCK"),
        (10.0, "LOW_STOCK"),
        (10.000001, None),
        (Decimal128("7.25"), "LOW_STOCK"),
        (Decimal128("0.00"), "OUT_OF_STOCK"),
        (Decimal128("10.5"), None),
        (-2, "OUT_OF_STOCK"),
    ],
)
def test_numeric_quantity_types_compare_correctly(app, lambda_context, quantity, level):
    result = app.handler(quantity_event(10, quantity, operation="insert"), lambda_context)

    assert result["level"] == (level or "OK")
    assert levels(published()) == ([level] if level else [])


@pytest.mark.parametrize(
    ("quantity", "problem"),
    [("pocos", "string"), (None, "null"), (True, "boolean"), (Decimal128("NaN"), "not a finite")],
)
def test_non_numeric_quantity_is_a_warning_and_a_metric(
    app, lambda_context, capsys, caplog, quantity, problem
):
    result = app.handler(quantity_event(10, quantity, operation="insert"), lambda_context)

    assert result == {"outcome": "skipped", "reason": "quantity not numeric"}
    assert published() == []
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.msg == "quantity is not a number, no alert decided"
    assert warning.problem.startswith(problem)
    assert emitted_metrics(capsys.readouterr().out)["InvalidQuantities"] == 1


def test_missing_quantity_is_a_warning(app, lambda_context, caplog):
    event = quantity_event(10, 1, operation="insert")
    del event["detail"]["fullDocument"]["cantidad"]

    assert app.handler(event, lambda_context)["reason"] == "quantity not numeric"
    assert any(getattr(record, "problem", None) == "missing" for record in caplog.records)


def test_per_document_threshold(stock_env, load_app, lambda_context, monkeypatch, capsys):
    # GIVEN a threshold field; one product asks for 20, another has a broken value
    monkeypatch.setenv("THRESHOLD_FIELD", "stockMinimo")
    app = load_app("stock_alert")

    # WHEN a product with 15 units and its own threshold of 20 is inserted
    own = app.handler(quantity_event(10, 15, operation="insert", stockMinimo=20), lambda_context)
    # AND one with 15 units and an unreadable threshold (the default 10 applies)
    broken = quantity_event(11, 15, operation="insert", stockMinimo="veinte")
    broken["detail"]["documentKey"]["_id"]["$oid"] = "6750a1f0c2b4a1e0f0a1b0ff"
    fallback = app.handler(broken, lambda_context)

    # THEN the first alerts against 20, the second does not and is counted
    assert own["outcome"] == "alerted"
    assert "umbral 20" in published()[0]["texts"]["sms"]
    assert fallback["outcome"] == "no alert"
    assert emitted_metrics(capsys.readouterr().out)["InvalidThresholds"] == 1


def test_other_collections_are_ignored(app, lambda_context):
    event = quantity_event(10, 1, operation="insert")
    event["detail"]["ns"]["coll"] = "clientes"

    assert app.handler(event, lambda_context) == {
        "outcome": "skipped",
        "reason": "other collection",
    }


def test_alert_metric_is_emitted(app, lambda_context, capsys):
    app.handler(read_event("insert-low-stock"), lambda_context)
    assert emitted_metrics(capsys.readouterr().out)["StockAlertsSent"] == 1


# --- malformed input -----------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(detail=malformed_details())
def test_malformed_details_give_a_clear_error_and_publish_nothing(app, lambda_context, detail):
    event = read_event("insert-low-stock")
    event["detail"] = detail

    with pytest.raises(ContractError) as raised:
        app.handler(event, lambda_context)

    assert str(raised.value).startswith("change event")
    assert published() == []


def test_sam_local_env_file_holds_valid_settings():
    env = json.loads((EVENTS_DIR / "env.json").read_text(encoding="utf-8"))["StockAlertFunction"]

    parsed = StockAlertSettings.from_env(env)

    assert parsed.topic_arn.startswith("arn:aws:sns:")
    assert parsed.state_table
    assert parsed.threshold_field is None
    assert (parsed.language, parsed.mode, parsed.alert_on_replay) == ("es", "episode", False)
