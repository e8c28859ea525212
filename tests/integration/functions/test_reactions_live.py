"""Stock alert and update notifier on real change events: changes made in MongoDB (SecantusDB,
or MONGODB_URI), read from a change stream, encoded by the contract, handled over HTTP against
moto_server. Also answers, with captured events, what an insert and a delete carry.
"""

import json
from typing import Any

import boto3
import pytest
from pymongo.database import Database

from change_contract import encode_change
from change_contract.ejson import CODEC_OPTIONS
from localdev.samples import BUS_NAME, lambda_event
from localdev.servers import wait_until
from tests.unit.functions.conftest import FakeLambdaContext, load_handler_module

ACCOUNT = "123456789012"
REGION = "us-east-1"


def capture(db: Database[Any], *, pre_images: bool, steps: Any) -> list[dict[str, Any]]:
    """Run each write step, reading its change events before the next step starts, and return
    them as Lambda would receive them. (Steps are read one by one because `updateLookup` looks
    the document up when the event is read: after a delete it finds nothing.)"""
    name = "productos"
    db.create_collection(name, changeStreamPreAndPostImages={"enabled": pre_images})
    collection = db.get_collection(name, codec_options=CODEC_OPTIONS)
    options: dict[str, Any] = {"full_document": "updateLookup"}
    if pre_images:
        options["full_document_before_change"] = "whenAvailable"
    events: list[dict[str, Any]] = []
    with collection.watch(**options) as stream:
        for step in steps:
            expected = len(events) + step(collection)

            def all_read(expected: int = expected) -> bool:
                change = stream.try_next()
                if change is not None:
                    encoded = encode_change(change, bus_name=BUS_NAME)
                    events.append(lambda_event(encoded.entry))
                return len(events) >= expected

            wait_until(all_read, deadline_s=20, what=f"{expected} change events")
    return events


def sell(collection: Any) -> int:
    product = collection.insert_one({"nombreProducto": "Café molido", "cantidad": 4})
    collection.update_one({"_id": product.inserted_id}, {"$set": {"cantidad": 0}})
    return 2


def delete(collection: Any) -> int:
    collection.delete_one({"nombreProducto": "Café molido"})
    return 1


SELL_AND_DELETE = (sell, delete)


# --- what the events carry ----------------------------------------------------------------------


def test_insert_and_delete_carry_what_the_docs_say_with_pre_images(fresh_db):
    insert, update, delete = capture(fresh_db, pre_images=True, steps=SELL_AND_DELETE)

    # An insert: the whole new document, no update description, no pre-image.
    assert insert["detail"]["operationType"] == "insert"
    assert insert["detail"]["fullDocument"]["cantidad"] == 4
    assert "updateDescription" not in insert["detail"]
    assert "fullDocumentBeforeChange" not in insert["detail"]

    # An update: what changed, the document after (updateLookup) and the one before.
    assert update["detail"]["updateDescription"]["updatedFields"] == {"cantidad": 0}
    assert update["detail"]["fullDocument"]["cantidad"] == 0
    assert update["detail"]["fullDocumentBeforeChange"]["cantidad"] == 4

    # A delete: only the key, plus the pre-image because the collection has them enabled.
    assert set(delete["detail"]) >= {"documentKey", "fullDocumentBeforeChange"}
    assert "fullDocument" not in delete["detail"]
    assert "updateDescription" not in delete["detail"]
    assert delete["detail"]["fullDocumentBeforeChange"]["cantidad"] == 0


def test_delete_without_pre_images_carries_only_the_key(fresh_db):
    _, _, delete = capture(fresh_db, pre_images=False, steps=SELL_AND_DELETE)

    content = set(delete["detail"]) & {
        "documentKey",
        "fullDocument",
        "fullDocumentBeforeChange",
        "updateDescription",
    }
    assert content == {"documentKey"}


# --- the handlers over HTTP ---------------------------------------------------------------------


@pytest.fixture
def inboxes(aws_endpoint, monkeypatch) -> dict[str, str]:
    """Topics, tables and an SQS inbox per topic on moto_server; settings pointing at them."""
    dynamodb = boto3.client("dynamodb")
    for table, key in (("idempotency", "id"), ("alert-state", "productKey")):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    queues = {}
    for topic in ("stock-alerts", "changes"):
        topic_arn = sns.create_topic(Name=topic)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"{topic}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        queues[topic] = queue_url
    for name, value in {
        "IDEMPOTENCY_TABLE": "idempotency",
        "ALERT_STATE_TABLE": "alert-state",
        "ALERT_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:stock-alerts",
        "CHANGES_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:changes",
        "POWERTOOLS_SERVICE_NAME": "",
    }.items():
        monkeypatch.setenv(name, value)
    return queues


def received(queue_url: str, count: int) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []

    def arrived() -> bool:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        bodies.extend(json.loads(message["Body"]) for message in response.get("Messages", []))
        return len(bodies) >= count

    wait_until(arrived, deadline_s=20, what=f"{count} messages in {queue_url}")
    return bodies


def test_real_changes_page_and_notify_over_http(fresh_db, inboxes):
    # GIVEN real change events of a product sold down to zero and deleted
    events = capture(fresh_db, pre_images=True, steps=SELL_AND_DELETE)
    stock_alert = load_handler_module("stock_alert")
    update_notifier = load_handler_module("update_notifier")
    context = FakeLambdaContext()

    # WHEN both handlers get every event, each twice (at-least-once delivery)
    outcomes = [
        (stock_alert.handler(event, context)["outcome"], update_notifier.handler(event, context))
        for event in events + events
    ]

    # THEN the insert (4 units) and the sale to zero paged, once each
    assert [alert for alert, _ in outcomes[:3]] == ["alerted", "alerted", "skipped"]
    alerts = received(inboxes["stock-alerts"], 2)
    severities = [body["MessageAttributes"]["severity"]["Value"] for body in alerts]
    assert severities == ["LOW_STOCK", "OUT_OF_STOCK"]
    assert alerts[0]["Subject"] == "Stock bajo (4, umbral 10): Café molido"
    assert (
        boto3.client("sqs").receive_message(QueueUrl=inboxes["stock-alerts"]).get("Messages")
        is None
    )

    # AND the update was notified once, old -> new from the pre-image
    (notice,) = received(inboxes["changes"], 1)
    assert notice["MessageAttributes"]["changedFields"]["Value"] == '["cantidad"]'
    machine = json.loads(notice["Message"])  # SQS subscribers get the JSON variant
    assert machine["changes"] == [{"field": "cantidad", "kind": "updated", "new": 0, "old": 4}]
    assert boto3.client("sqs").receive_message(QueueUrl=inboxes["changes"]).get("Messages") is None


def test_update_read_after_a_delete_has_no_document(fresh_db):
    # GIVEN an update and a delete committed before the stream reads the update
    def sell_then_delete(collection: Any) -> int:
        return sell(collection) + delete(collection)

    _, update, _ = capture(fresh_db, pre_images=False, steps=[sell_then_delete])

    # THEN updateLookup found nothing: the stock alert has no document to judge (as on mongod)
    assert update["detail"]["fullDocument"] is None
    assert update["detail"]["updateDescription"]["updatedFields"] == {"cantidad": 0}
