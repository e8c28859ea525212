"""Sample change events for `events/`, built through the contract's own encoder.

Each case is a change document shaped as pymongo returns it (BSON types, mongod's key order),
encoded with `change_contract.encode_change`, and wrapped in the envelope EventBridge hands to
Lambda. Deterministic: the same code always makes the same files.
"""

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bson import Decimal128, Int64, ObjectId, Timestamp
from bson.binary import Binary

from change_contract import encode_backfill, encode_change
from change_contract.encode import PutEventsEntry

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUS_NAME = "mongodb-changes"
NAMESPACE = {"db": "clase", "coll": "productos"}
EPOCH = 1_796_300_000  # 2026-12-03T11:33:20Z, the base cluster time of the samples
_ID_NAMESPACE = uuid.UUID("5d2e9a43-3c1f-4f7e-9b1a-6c2b7f0d1e11")

LECHE = ObjectId("6750a1f0c2b4a1e0f0a1b001")
PAN = ObjectId("6750a1f0c2b4a1e0f0a1b002")
ARROZ = ObjectId("6750a1f0c2b4a1e0f0a1b003")
CAFE = ObjectId("6750a1f0c2b4a1e0f0a1b004")
ACEITE = ObjectId("6750a1f0c2b4a1e0f0a1b005")


def _token(seconds: int, increment: int) -> dict[str, str]:
    # Shaped like mongod's hex resume tokens; consumers treat `_data` as an opaque string.
    return {"_data": f"82{EPOCH + seconds:08X}{increment:08X}2B042C0100296E5A1004"}


def change(
    operation_type: str,
    seconds: int,
    *,
    document_id: ObjectId | None = None,
    increment: int = 1,
    **fields: Any,
) -> dict[str, Any]:
    """A change document in mongod's key order, with the given extra fields."""
    event: dict[str, Any] = {
        "_id": _token(seconds, increment),
        "operationType": operation_type,
        "clusterTime": Timestamp(EPOCH + seconds, increment),
        "wallTime": dt.datetime.fromtimestamp(EPOCH + seconds, tz=dt.UTC)
        + dt.timedelta(milliseconds=123),
    }
    for key in ("fullDocument", "ns", "to", "documentKey", "updateDescription"):
        if key in fields:
            event[key] = fields.pop(key)
    if "ns" not in event and operation_type != "invalidate":
        event["ns"] = dict(NAMESPACE)
    if document_id is not None:
        event["documentKey"] = {"_id": document_id}
    event.update(fields)
    return event


def product(document_id: ObjectId, name: str, quantity: Any, **extra: Any) -> dict[str, Any]:
    return {"_id": document_id, "nombreProducto": name, "cantidad": quantity, **extra}


def update_description(
    updated: Mapping[str, Any] | None = None,
    removed: list[str] | None = None,
    truncated: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "updatedFields": dict(updated or {}),
        "removedFields": list(removed or []),
        "truncatedArrays": list(truncated or []),
    }


def lambda_event(entry: PutEventsEntry, *, replay_name: str | None = None) -> dict[str, Any]:
    """The event EventBridge delivers to a Lambda target for a PutEvents entry."""
    detail = json.loads(entry["Detail"])
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid5(_ID_NAMESPACE, str(detail.get("eventId")))),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": ACCOUNT,
        "time": entry["Time"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
    if replay_name is not None:
        event["replay-name"] = replay_name
    return event


def _sample(change_document: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    encoded = encode_change(change_document, bus_name=BUS_NAME, fast=False)
    return lambda_event(encoded.entry, **options)


def _insert() -> dict[str, Any]:
    doc = product(LECHE, "Leche entera", 25, precio=Decimal128("1.15"), createdBy="ana@example.com")
    return _sample(change("insert", 1, document_id=LECHE, fullDocument=doc))


def _insert_low_stock() -> dict[str, Any]:
    doc = product(CAFE, "Café molido", 4, precio=Decimal128("3.80"), createdBy="luis@example.com")
    return _sample(change("insert", 2, document_id=CAFE, fullDocument=doc))


def _update_quantity(
    seconds: int, document_id: ObjectId, name: str, before: int, after: int, **extra: Any
) -> dict[str, Any]:
    return change(
        "update",
        seconds,
        document_id=document_id,
        fullDocument=product(document_id, name, after, updatedBy="caja-03"),
        updateDescription=update_description({"cantidad": after, "updatedBy": "caja-03"}),
        fullDocumentBeforeChange=product(document_id, name, before, updatedBy="caja-01"),
        **extra,
    )


def _update_low_stock() -> dict[str, Any]:
    return _sample(_update_quantity(10, PAN, "Pan de molde", 12, 8))


def _update_low_stock_replayed() -> dict[str, Any]:
    return _sample(
        _update_quantity(10, PAN, "Pan de molde", 12, 8), replay_name="replay-2026-12-03"
    )


def _update_low_stock_no_pre_image() -> dict[str, Any]:
    event = _update_quantity(11, ARROZ, "Arroz largo", 14, 9)
    del event["fullDocumentBeforeChange"]
    return _sample(event)


def _update_out_of_stock() -> dict[str, Any]:
    return _sample(_update_quantity(12, PAN, "Pan de molde", 8, 0, increment=2))


def _update_restock() -> dict[str, Any]:
    return _sample(_update_quantity(13, PAN, "Pan de molde", 0, 40, increment=3))


def _update_price_change() -> dict[str, Any]:
    before = product(LECHE, "Leche entera", 25, precio=Decimal128("1.15"), updatedBy="ana")
    after = product(LECHE, "Leche entera", 25, precio=Decimal128("1.25"), updatedBy="marta")
    return _sample(
        change(
            "update",
            20,
            document_id=LECHE,
            fullDocument=after,
            updateDescription=update_description(
                {"precio": Decimal128("1.25"), "updatedBy": "marta"}
            ),
            fullDocumentBeforeChange=before,
        )
    )


def _update_field_removed() -> dict[str, Any]:
    after = product(ACEITE, "Aceite de oliva", 30, etiquetas=["oferta"])
    return _sample(
        change(
            "update",
            21,
            document_id=ACEITE,
            fullDocument=after,
            updateDescription=update_description(
                removed=["descripcion"], truncated=[{"field": "etiquetas", "newSize": 1}]
            ),
        )
    )


def _replace() -> dict[str, Any]:
    doc = product(ARROZ, "Arroz integral", 6, precio=Decimal128("2.10"), modifiedBy="luis")
    return _sample(change("replace", 30, document_id=ARROZ, fullDocument=doc))


def _delete() -> dict[str, Any]:
    return _sample(change("delete", 40, document_id=ACEITE))


def _delete_with_pre_image() -> dict[str, Any]:
    before = product(CAFE, "Café molido", 4, precio=Decimal128("3.80"))
    return _sample(change("delete", 41, document_id=CAFE, fullDocumentBeforeChange=before))


def _transaction_update() -> dict[str, Any]:
    lsid = {
        "id": Binary(uuid.UUID("0f7c1f7e-9a5b-4c43-8d1e-3b4b3c2a1d00").bytes, 4),
        "uid": Binary(bytes(range(32)), 0),
    }
    event = _update_quantity(50, LECHE, "Leche entera", 25, 24, txnNumber=Int64(7), lsid=lsid)
    return _sample(event)


def _drop() -> dict[str, Any]:
    return _sample(change("drop", 60))


def _invalidate() -> dict[str, Any]:
    return _sample(change("invalidate", 60, increment=2))


def _backfill_low_stock() -> dict[str, Any]:
    # A product already low when the system was deployed, published by `python -m relay backfill`.
    doc = product(ARROZ, "Arroz largo", 3, precio=Decimal128("1.95"), updatedBy="luis")
    snapshot = Timestamp(EPOCH + 70, 1)
    read_at = dt.datetime.fromtimestamp(EPOCH + 72, tz=dt.UTC) + dt.timedelta(milliseconds=456)
    encoded = encode_backfill(
        doc, NAMESPACE, snapshot, read_at=read_at, bus_name=BUS_NAME, fast=False
    )
    return lambda_event(encoded.entry)


def _malformed() -> dict[str, Any]:
    # An envelope that claims to be a change event but whose detail is not one.
    event = _insert()
    event["detail"] = {"schemaVersion": 1, "nombreProducto": "Leche entera", "cantidad": "pocos"}
    return event


SAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "insert": _insert,
    "insert-low-stock": _insert_low_stock,
    "update-low-stock": _update_low_stock,
    "update-low-stock-replayed": _update_low_stock_replayed,
    "update-low-stock-no-pre-image": _update_low_stock_no_pre_image,
    "update-out-of-stock": _update_out_of_stock,
    "update-restock": _update_restock,
    "update-price-change": _update_price_change,
    "update-field-removed": _update_field_removed,
    "update-in-transaction": _transaction_update,
    "replace": _replace,
    "delete": _delete,
    "delete-with-pre-image": _delete_with_pre_image,
    "drop": _drop,
    "invalidate": _invalidate,
    "backfill-low-stock": _backfill_low_stock,
    "malformed-not-a-change": _malformed,
}

# Samples that are not valid change events on purpose.
MALFORMED = frozenset({"malformed-not-a-change"})
