"""Publishing to SNS: one call, JSON message structure, typed attributes, text fitted to limits.

Converts SNS failures into `DownstreamError` so the platform retries; never drops a message.
"""

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from reaction_runtime.errors import DownstreamError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

# SNS: "Subjects must be UTF-8 text with no line breaks or control characters, and less than 100
# characters long" (Publish API reference). Accents are fine; length counts characters.
SUBJECT_MAX_CHARS = 99
# One SMS segment: 140 bytes (160 GSM-7 or 70 UCS-2 characters). Counting UTF-8 bytes is the
# conservative choice: it never exceeds 140 bytes whatever encoding SNS picks.
SMS_MAX_BYTES = 140
_ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """Text with line breaks and control characters replaced by single spaces."""
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", text)).split())


def fit_chars(text: str, limit: int) -> str:
    """`text` on one line, cut to at most `limit` characters with an ellipsis when cut."""
    flat = one_line(text)
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + _ELLIPSIS


def fit_bytes(text: str, limit: int) -> str:
    """`text` on one line, cut on a character boundary to at most `limit` UTF-8 bytes."""
    flat = one_line(text)
    if len(flat.encode("utf-8")) <= limit:
        return flat
    budget = limit - len(_ELLIPSIS.encode("utf-8"))
    cut = flat.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return cut.rstrip() + _ELLIPSIS


def subject_line(text: str) -> str:
    """A valid SNS `Subject`: one line, no control characters, under 100 characters."""
    return fit_chars(text, SUBJECT_MAX_CHARS)


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """One publish: per-protocol texts (`default` required), a subject and message attributes."""

    texts: Mapping[str, str]
    subject: str
    attributes: Mapping[str, str | Sequence[str]]

    def request(self, topic_arn: str) -> dict[str, Any]:
        """The keyword arguments of `sns.publish` for this message."""
        if "default" not in self.texts:
            raise ValueError("an SNS JSON message needs a `default` text")
        attributes: dict[str, MessageAttributeValueTypeDef] = {}
        for name, value in self.attributes.items():
            if not value:
                # SNS refuses an empty attribute value; leaving it out keeps the message.
                continue
            if isinstance(value, str):
                attributes[name] = {"DataType": "String", "StringValue": value}
            else:
                array = json.dumps(list(value), ensure_ascii=False)
                attributes[name] = {"DataType": "String.Array", "StringValue": array}
        return {
            "TopicArn": topic_arn,
            "Message": json.dumps(dict(self.texts), ensure_ascii=False),
            "MessageStructure": "json",
            "Subject": subject_line(self.subject),
            "MessageAttributes": attributes,
        }


class SnsPublisher:
    """Publishes `SnsMessage`s to one topic with a client created once and handed in."""

    def __init__(self, client: "SNSClient", topic_arn: str, logger: "Logger") -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._logger = logger

    @property
    def topic_arn(self) -> str:
        return self._topic_arn

    def publish(self, message: SnsMessage) -> str:
        """Publish once and return the SNS message id; raise `DownstreamError` on failure."""
        try:
            response = self._client.publish(**message.request(self._topic_arn))
        except (ClientError, BotoCoreError) as error:
            code = error.response["Error"]["Code"] if isinstance(error, ClientError) else None
            self._logger.error(
                "sns publish failed", topic_arn=self._topic_arn, error_code=code, error=str(error)
            )
            raise DownstreamError(f"SNS publish to {self._topic_arn} failed: {error}") from error
        message_id = response["MessageId"]
        self._logger.info("sns message published", topic_arn=self._topic_arn, message_id=message_id)
        return message_id
