"""Watch scope -> pymongo change stream: which object to watch, with which pipeline and options.

Events are read as the contract's `ChangeDocument`: raw BSON, decoded once in C when pymongo reads
the resume token, and rendered from that same decode. Never forwards or checkpoints anything.
"""

from collections.abc import Mapping
from typing import Any

from pymongo import MongoClient
from pymongo.change_stream import ChangeStream
from pymongo.client_session import ClientSession

from change_contract.ejson import STREAM_OPTIONS
from relay.checkpoint import Position
from relay.settings import RelaySettings

# Events that concern a whole database or the stream itself: kept when a collection list filters.
_STREAM_EVENTS = ["dropDatabase", "invalidate"]


def make_client(uri: str, **options: Any) -> MongoClient[Any]:
    """A client that decodes everything as `ChangeDocument` with the contract's codec options."""
    return MongoClient(
        uri,
        document_class=STREAM_OPTIONS.document_class,
        tz_aware=True,
        tzinfo=STREAM_OPTIONS.tzinfo,
        uuidRepresentation="standard",
        appname="mongo-change-relay",
        **options,
    )


def pipeline_for(settings: RelaySettings) -> list[dict[str, Any]]:
    """The aggregation pipeline: collection filter, the relay's own checkpoints out, WATCH_MATCH."""
    stages: list[dict[str, Any]] = []
    scope = settings.scope
    if scope.level == "collections":
        stages.append(
            {
                "$match": {
                    "$or": [
                        {"ns.coll": {"$in": list(scope.collections)}},
                        {"operationType": {"$in": _STREAM_EVENTS}},
                    ]
                }
            }
        )
    if settings.checkpoint_store == "mongodb" and _sees_checkpoints(settings):
        # Otherwise every checkpoint write would be a change to forward, and so on forever.
        stages.append(
            {
                "$match": {
                    "$nor": [
                        {
                            "ns.db": settings.checkpoint_database,
                            "ns.coll": settings.checkpoint_collection,
                        }
                    ]
                }
            }
        )
    if settings.watch_match:
        stages.append({"$match": dict(settings.watch_match)})
    return stages


def _sees_checkpoints(settings: RelaySettings) -> bool:
    scope = settings.scope
    if scope.database is None:
        return True
    if scope.database != settings.checkpoint_database:
        return False
    return not scope.collections or settings.checkpoint_collection in scope.collections


def watch_options(settings: RelaySettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_await_time_ms": settings.max_await_time_ms,
        "batch_size": settings.read_batch_size,
    }
    if settings.full_document != "default":
        options["full_document"] = settings.full_document
    if settings.full_document_before_change != "off":
        options["full_document_before_change"] = settings.full_document_before_change
    return options


def open_stream(
    client: MongoClient[Any],
    settings: RelaySettings,
    *,
    position: Position | None,
    session: ClientSession | None = None,
    start_at: Any = None,
) -> ChangeStream[Any]:
    """Open the change stream at `position` (or at `start_at`, or now when both are None)."""
    options = watch_options(settings)
    if position is not None:
        key = "start_after" if position.start_after else "resume_after"
        options[key] = position.token
    elif start_at is not None:
        options["start_at_operation_time"] = start_at
    pipeline = pipeline_for(settings)
    scope = settings.scope
    if scope.database is None:
        return client.watch(pipeline, session=session, **options)
    database = client.get_database(scope.database, codec_options=STREAM_OPTIONS)
    if scope.level == "collection":
        return database[scope.collections[0]].watch(pipeline, session=session, **options)
    return database.watch(pipeline, session=session, **options)


def describe_watch(settings: RelaySettings) -> Mapping[str, Any]:
    """What `check` prints: the scope, the pipeline and the options, without the URI."""
    return {
        "scope": settings.scope.describe(),
        "pipeline": pipeline_for(settings),
        "options": watch_options(settings),
    }
