"""Bare baseline for stock_alert and update_notifier: one SNS publish per event, nothing else.

No validation, no idempotency, no logging or metrics: what a hand-written boto3 handler does.
"""

import json
import os
from typing import Any

import boto3

_sns = boto3.client("sns")
_TOPIC_ARN = os.environ["BARE_TOPIC_ARN"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event["detail"]
    document = detail.get("fullDocument") or {}
    message = {
        "product": document.get("nombreProducto"),
        "quantity": document.get("cantidad"),
        "eventId": detail["eventId"],
    }
    response = _sns.publish(TopicArn=_TOPIC_ARN, Message=json.dumps(message))
    return {"messageId": response["MessageId"]}
