"""Audit records built from change events: actor rules, changed fields, redaction, settings."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from bson import Decimal128, ObjectId, Timestamp

from audit_writer import paths
from audit_writer.record import ActorSource, build_record, changed_fields, find_actor
from audit_writer.settings import AuditSettings, DocumentPolicy, RecordSettings, StoreKind
from change_contract import ChangeDetail, ContractError, decode_event
from localdev.samples import SAMPLES
from reaction_runtime import ConfigError

EVENTS = Path(__file__).resolve().parents[3] / "events"
RECORDED_AT = dt.datetime(2026, 12, 3, 13, 0, tzinfo=dt.UTC)
MASK = paths.MASK

# sample -> (actor, where it came from, changed fields)
EXPECTED_ACTORS = {
    "insert": ("ana@example.com", ActorSource.FULL_DOCUMENT, []),
    "insert-low-stock": ("luis@example.com", ActorSource.FULL_DOCUMENT, []),
    "update-low-stock": ("caja-03", ActorSource.UPDATE_DESCRIPTION, ["cantidad", "updatedBy"]),
    "update-low-stock-replayed": (
        "caja-03",
        ActorSource.UPDATE_DESCRIPTION,
        ["cantidad", "updatedBy"],
    ),
    "update-low-stock-no-pre-image": (
        "caja-03",
        ActorSource.UPDATE_DESCRIPTION,
        ["cantidad", "updatedBy"],
    ),
    "update-out-of-stock": ("caja-03", ActorSource.UPDATE_DESCRIPTION, ["cantidad", "updatedBy"]),
    "update-restock": ("caja-03", ActorSource.UPDATE_DESCRIPTION, ["cantidad", "updatedBy"]),
    "update-price-change": ("marta", ActorSource.UPDATE_DESCRIPTION, ["precio", "updatedBy"]),
    "update-field-removed": ("unknown", ActorSource.NONE, ["descripcion", "etiquetas"]),
    "update-in-transaction": (
        "caja-03",
        ActorSource.UPDATE_DESCRIPTION,
        ["cantidad", "updatedBy"],
    ),
    "replace": ("luis", ActorSource.FULL_DOCUMENT, []),
    "delete": ("unknown", ActorSource.NONE, []),
    "delete-with-pre-image": ("unknown", ActorSource.NONE, []),
}

BACKFILL_SAMPLE = "backfill-low-stock"
# The backfill sample is generated with the relay's backfill command: expected whenever it exists.
if BACKFILL_SAMPLE in SAMPLES:
    EXPECTED_ACTORS[BACKFILL_SAMPLE] = ("backfill", ActorSource.BACKFILL, [])


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def detail_of(name: str, **changes: Any) -> ChangeDetail:
    event = sample(name)
    event["detail"] = {**event["detail"], **changes}
    return decode_event(event).detail


def test_every_document_sample_is_listed() -> None:
    # GIVEN every valid sample that concerns one document
    names = set(SAMPLES)
    document_samples = set()
    for name in names:
        try:
            if decode_event(sample(name)).detail.document_key is not None:
                document_samples.add(name)
        except ContractError:
            continue
    # THEN the expectations above cover each of them (a new sample needs an expectation)
    assert document_samples == set(EXPECTED_ACTORS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ACTORS))
def test_record_of_each_sample(name: str) -> None:
    event = decode_event(sample(name))
    record = build_record(event.detail, RecordSettings(), recorded_at=RECORDED_AT)
    document = record.as_document()

    actor, source, fields = EXPECTED_ACTORS[name]
    assert (document["actor"], document["actorSource"]) == (actor, source.value)
    assert document["changedFields"] == fields
    assert document["eventId"] == event.detail.event_id
    baseline = name == BACKFILL_SAMPLE
    assert document["operationType"] == ("baseline" if baseline else event.detail.operation_type)
    assert document["origin"] == ("backfill" if baseline else "changeStream")
    assert document["ns"] == {"db": "clase", "coll": "productos"}
    assert isinstance(document["documentKey"]["_id"], ObjectId)
    assert document["clusterTime"] == Timestamp(
        event.detail.cluster_time.t, 0 + event.detail.cluster_time.i
    )
    assert document["wallTime"] == event.detail.wall_time
    assert document["recordedAt"] == RECORDED_AT
    # keep (the default) keeps both images exactly, BSON types included
    assert document["fullDocument"] == event.detail.full_document
    assert document["fullDocumentBeforeChange"] == event.detail.full_document_before_change


def test_changes_keep_the_update_description_with_bson_values() -> None:
    record = build_record(
        detail_of("update-price-change"), RecordSettings(), recorded_at=RECORDED_AT
    )
    assert record.as_document()["changes"] == {
        "updatedFields": [
            {"field": "precio", "value": Decimal128("1.25")},
            {"field": "updatedBy", "value": "marta"},
        ],
        "removedFields": [],
        "truncatedArrays": [],
    }
    removed = build_record(
        detail_of("update-field-removed"), RecordSettings(), recorded_at=RECORDED_AT
    )
    assert removed.as_document()["changes"] == {
        "updatedFields": [],
        "removedFields": ["descripcion"],
        "truncatedArrays": [{"field": "etiquetas", "newSize": 1}],
    }
    insert = build_record(detail_of("insert"), RecordSettings(), recorded_at=RECORDED_AT)
    assert insert.as_document()["changes"] is None


def test_an_update_takes_its_actor_only_from_what_it_set() -> None:
    # GIVEN an update that did not set updatedBy, on a document a previous writer stamped
    description = {"updatedFields": {"cantidad": 3}, "removedFields": [], "truncatedArrays": []}
    detail = detail_of("update-low-stock-no-pre-image", updateDescription=description)
    # WHEN the actor is looked for
    actor = find_actor(detail, ("updatedBy", "modifiedBy", "createdBy"))
    # THEN the post-image's stale updatedBy is not taken for this writer
    assert detail.full_document is not None
    assert detail.full_document["updatedBy"] == "caja-03"
    assert actor == ("unknown", ActorSource.NONE)


def test_a_shrunk_update_falls_back_to_its_post_image() -> None:
    event = sample("update-low-stock")
    del event["detail"]["updateDescription"]
    event["detail"]["truncated"] = ["updateDescription"]
    detail = decode_event(event).detail
    assert find_actor(detail, ("updatedBy",)) == ("caja-03", ActorSource.FULL_DOCUMENT)


def test_the_session_user_hash_when_no_field_names_the_writer() -> None:
    detail = detail_of("update-in-transaction")
    # No configured field matches: the lsid.uid hash (32 bytes 00..1f in the sample) is used.
    actor = find_actor(detail, ("auditUser",))
    assert actor == ("uid:" + bytes(range(32)).hex(), ActorSource.SESSION)


def test_actor_fields_are_paths_and_tried_in_order() -> None:
    updated = {"audit.by": "pos-7", "modifiedBy": "ops", "cantidad": 1}
    description = {"updatedFields": updated, "removedFields": [], "truncatedArrays": []}
    detail = detail_of("update-low-stock", updateDescription=description)
    assert find_actor(detail, ("audit.by", "modifiedBy")) == (
        "pos-7",
        ActorSource.UPDATE_DESCRIPTION,
    )
    assert find_actor(detail, ("nobody", "modifiedBy")) == ("ops", ActorSource.UPDATE_DESCRIPTION)
    # A sub-document set at once is searched inside.
    nested = {
        "updatedFields": {"audit": {"by": "pos-8"}},
        "removedFields": [],
        "truncatedArrays": [],
    }
    detail = detail_of("update-low-stock", updateDescription=nested)
    assert find_actor(detail, ("audit.by",)) == ("pos-8", ActorSource.UPDATE_DESCRIPTION)


def test_a_non_text_actor_is_written_as_extended_json() -> None:
    user = {"$oid": "6750a1f0c2b4a1e0f0a1b0ff"}
    author = {"id": 42, "name": "Ana"}
    document = {**sample("insert")["detail"]["fullDocument"], "createdBy": user, "by": author}
    detail = detail_of("insert", fullDocument=document)
    found = find_actor(detail, ("createdBy",))
    assert found == ("6750a1f0c2b4a1e0f0a1b0ff", ActorSource.FULL_DOCUMENT)
    found = find_actor(detail, ("by",))
    assert found == ('{"id":42,"name":"Ana"}', ActorSource.FULL_DOCUMENT)


def test_a_delete_is_never_credited_to_the_pre_image_writer() -> None:
    before = {**sample("delete-with-pre-image")["detail"]["fullDocumentBeforeChange"]}
    before["updatedBy"] = "last-editor"
    detail = detail_of("delete-with-pre-image", fullDocumentBeforeChange=before)
    assert find_actor(detail, ("updatedBy",)) == ("unknown", ActorSource.NONE)


def test_a_replace_with_pre_image_lists_the_top_level_fields_that_differ() -> None:
    after = {"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b003"}, "a": 1, "b": 2.0, "d": 4}
    before = {"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b003"}, "a": 1, "b": 2, "c": 3}
    detail = detail_of("replace", fullDocument=after, fullDocumentBeforeChange=before)
    # 2 and 2.0 are different BSON values (int32 and double): reported as changed
    assert changed_fields(detail) == ["b", "c", "d"]


SENSITIVE_DOCUMENT = {
    "_id": {"$oid": "6750a1f0c2b4a1e0f0a1b001"},
    "nombreProducto": "Leche entera",
    "cantidad": 25,
    "proveedor": {"email": "ventas@example.com", "telefono": "+34 600 000 000"},
    "contactos": [{"email": "a@example.com", "rol": "x"}, {"email": "b@example.com"}],
    "createdBy": "ana@example.com",
}


@pytest.mark.parametrize(
    ("policy", "expected_email"),
    [(DocumentPolicy.KEEP, "ventas@example.com"), (DocumentPolicy.REDACT, MASK)],
)
def test_document_policies(policy: DocumentPolicy, expected_email: str) -> None:
    detail = detail_of("insert", fullDocument=SENSITIVE_DOCUMENT)
    settings = RecordSettings(
        full_document=policy, redact_fields=("proveedor.email", "contactos.email")
    )
    document = build_record(detail, settings, recorded_at=RECORDED_AT).as_document()["fullDocument"]
    assert document["proveedor"]["email"] == expected_email
    assert document["proveedor"]["telefono"] == "+34 600 000 000"
    assert document["cantidad"] == 25
    emails = [contact["email"] for contact in document["contactos"]]
    assert emails == (
        ["a@example.com", "b@example.com"] if policy is DocumentPolicy.KEEP else [MASK, MASK]
    )
    assert document["contactos"][0]["rol"] == "x"
    # the decoded event itself is never changed
    assert detail.full_document is not None
    assert detail.full_document["proveedor"]["email"] == "ventas@example.com"


def test_drop_leaves_the_images_out() -> None:
    settings = RecordSettings(full_document=DocumentPolicy.DROP, before_change=DocumentPolicy.DROP)
    document = build_record(
        detail_of("update-low-stock"), settings, recorded_at=RECORDED_AT
    ).as_document()
    assert document["fullDocument"] is None
    assert document["fullDocumentBeforeChange"] is None
    assert document["changedFields"] == ["cantidad", "updatedBy"]


def test_pre_image_redaction_is_separate_from_post_image() -> None:
    settings = RecordSettings(
        full_document=DocumentPolicy.KEEP,
        before_change=DocumentPolicy.REDACT,
        redact_fields=("cantidad",),
    )
    document = build_record(
        detail_of("update-low-stock"), settings, recorded_at=RECORDED_AT
    ).as_document()
    assert document["fullDocument"]["cantidad"] == 8
    assert document["fullDocumentBeforeChange"]["cantidad"] == MASK


def test_redacted_fields_are_masked_in_changes_whatever_their_spelling() -> None:
    # GIVEN an update naming sensitive values by dotted key, by parent, and through an array index
    updated = {
        "proveedor.email": "nuevo@example.com",
        "contactos": [{"email": "c@example.com", "rol": "y"}],
        "contactos.1.email": "d@example.com",
        "cantidad": 7,
    }
    description = {"updatedFields": updated, "removedFields": [], "truncatedArrays": []}
    detail = detail_of("update-low-stock", updateDescription=description)
    # WHEN the record is built with those fields listed
    settings = RecordSettings(redact_fields=("proveedor.email", "contactos.email"))
    changes = build_record(detail, settings, recorded_at=RECORDED_AT).as_document()["changes"]
    # THEN every spelling is masked, the rest kept
    assert changes["updatedFields"] == [
        {"field": "proveedor.email", "value": MASK},
        {"field": "contactos", "value": [{"email": MASK, "rol": "y"}]},
        {"field": "contactos.1.email", "value": MASK},
        {"field": "cantidad", "value": 7},
    ]


def test_redacting_a_parent_masks_the_whole_sub_document() -> None:
    document = {"a": {"b": {"c": 1}}, "x": [1, 2], "y": [{"z": 1}, {"z": 2}]}
    assert paths.redact(document, [("a",)]) == {"a": MASK, "x": [1, 2], "y": [{"z": 1}, {"z": 2}]}
    assert paths.redact(document, [("x", "1")])["x"] == [1, MASK]
    assert paths.redact(document, [("y", "0", "z")])["y"] == [{"z": MASK}, {"z": 2}]
    assert paths.redact(document, [("missing", "path")]) == document
    updated = paths.redact_updated_fields({"a.b": {"c": 1}, "q": 1}, [("a",)])
    assert updated == {"a.b": MASK, "q": 1}


def test_settings_defaults() -> None:
    settings = AuditSettings.from_env({"MONGODB_URI": "mongodb://127.0.0.1:1"})
    assert settings.store is StoreKind.MONGODB
    assert (settings.database, settings.collection) == ("clase", "audit_log")
    assert settings.record == RecordSettings()
    assert settings.record.actor_fields == ("updatedBy", "modifiedBy", "createdBy")


def test_settings_read_every_variable() -> None:
    settings = AuditSettings.from_env(
        {
            "AUDIT_STORE": "DynamoDB",
            "AUDIT_TABLE": "audit",
            "AUDIT_DATABASE": "tienda",
            "AUDIT_COLLECTION": "historial",
            "AUDIT_ACTOR_FIELDS": "meta.user, editor",
            "AUDIT_FULL_DOCUMENT": "redact",
            "AUDIT_BEFORE_CHANGE": "drop",
            "AUDIT_REDACT_FIELDS": "email,cliente.telefono",
            "MONGODB_URI_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        }
    )
    assert settings.store is StoreKind.DYNAMODB
    assert settings.table == "audit"
    assert (settings.database, settings.collection) == ("tienda", "historial")
    assert settings.record == RecordSettings(
        actor_fields=("meta.user", "editor"),
        full_document=DocumentPolicy.REDACT,
        before_change=DocumentPolicy.DROP,
        redact_fields=("email", "cliente.telefono"),
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AUDIT_STORE": "postgres", "MONGODB_URI": "x"}, "AUDIT_STORE"),
        ({"AUDIT_STORE": "dynamodb"}, "AUDIT_TABLE"),
        ({}, "MONGODB_URI"),
        ({"AUDIT_FULL_DOCUMENT": "hide", "MONGODB_URI": "x"}, "AUDIT_FULL_DOCUMENT"),
        ({"AUDIT_BEFORE_CHANGE": "redact", "MONGODB_URI": "x"}, "AUDIT_REDACT_FIELDS"),
        ({"AUDIT_REDACT_FIELDS": "a..b", "MONGODB_URI": "x"}, "AUDIT_REDACT_FIELDS"),
        ({"AUDIT_ACTOR_FIELDS": "$where", "MONGODB_URI": "x"}, "AUDIT_ACTOR_FIELDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditSettings.from_env(env)
    assert caught.value.name == named
    assert str(caught.value).startswith(named)
