"""EventBridge event (as Lambda receives it) -> typed `ChangeEvent`.

Raises `ContractError` for anything that is not a valid change event; never returns half a model.
A detail offloaded to S3 (`payloadRef`) is fetched here, so consumers never see the pointer.
"""

import json
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from change_contract.constants import DETAIL_TYPE_CHANGE
from change_contract.errors import ContractError
from change_contract.models import ChangeEvent


class PayloadLoader(Protocol):
    """Fetches the full detail an offloaded event points at."""

    def __call__(self, bucket: str, key: str) -> Mapping[str, Any]: ...


class S3PayloadLoader:
    """Reads offloaded details from S3. The client is created on first use and kept."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def __call__(self, bucket: str, key: str) -> Mapping[str, Any]:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        body = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        loaded: Mapping[str, Any] = json.loads(body)
        return loaded


_default_loader = S3PayloadLoader()


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "event"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _event_id_hint(event: Mapping[str, Any]) -> str | None:
    detail = event.get("detail")
    if isinstance(detail, Mapping) and isinstance(detail.get("eventId"), str):
        return str(detail["eventId"])
    return None


def _resolve_pointer(detail: Mapping[str, Any], loader: PayloadLoader) -> Mapping[str, Any]:
    ref = detail.get("payloadRef")
    if not isinstance(ref, Mapping) or not ref.get("bucket") or not ref.get("key"):
        raise ContractError("`payloadRef` needs `bucket` and `key`", event_id=detail.get("eventId"))
    full = loader(str(ref["bucket"]), str(ref["key"]))
    if full.get("eventId") != detail.get("eventId"):
        raise ContractError(
            f"offloaded payload s3://{ref['bucket']}/{ref['key']} belongs to another event",
            event_id=detail.get("eventId"),
        )
    return full


def decode_event(
    event: Mapping[str, Any], *, payload_loader: PayloadLoader | None = None
) -> ChangeEvent:
    """Validate an EventBridge change event and return it typed, BSON values restored."""
    if not isinstance(event, Mapping):
        raise ContractError(f"expected an EventBridge event object, got {type(event).__name__}")
    detail_type = event.get("detail-type")
    if detail_type != DETAIL_TYPE_CHANGE:
        raise ContractError(
            f"detail-type is {detail_type!r}, not {DETAIL_TYPE_CHANGE!r}",
            event_id=_event_id_hint(event),
        )
    detail = event.get("detail")
    if isinstance(detail, Mapping) and detail.get("payloadRef") is not None:
        detail = _resolve_pointer(detail, payload_loader or _default_loader)
        event = {**event, "detail": detail}
    try:
        return ChangeEvent.model_validate(event)
    except ValidationError as error:
        raise ContractError(_describe(error), event_id=_event_id_hint(event)) from error
