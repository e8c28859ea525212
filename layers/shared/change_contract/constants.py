"""Names and limits of the contract. Changing a value here is a contract change: bump the schema."""

from typing import Final

# Version of the `detail` layout. Consumers reject a version they do not know.
SCHEMA_VERSION: Final = 1

DEFAULT_SOURCE: Final = "mongodb.changestream"
DETAIL_TYPE_CHANGE: Final = "MongoDB Change Event"
DETAIL_TYPE_GAP: Final = "MongoDB Change Stream Gap"

# `detail.origin` of an event that is a read of an existing document (`python -m relay backfill`)
# rather than a change; absent on real changes.
BACKFILL_ORIGIN: Final = "backfill"

# PutEvents accepts at most 10 entries per request, and since 29 January 2026 a request of up to
# 1 MB (it was 256 KB). The size is counted as in `size.entry_size`.
MAX_ENTRIES_PER_REQUEST: Final = 10
DEFAULT_MAX_REQUEST_BYTES: Final = 1_048_576

# Bytes EventBridge counts for the `Time` parameter when it is given.
TIME_FIELD_BYTES: Final = 14

# Operation types a change stream emits without `showExpandedEvents`.
OPERATION_TYPES: Final = frozenset(
    {"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"}
)
# Operation types that concern one document (and so carry `documentKey`).
DOCUMENT_OPERATIONS: Final = frozenset({"insert", "update", "replace", "delete"})

# Top-level fields of `detail` that carry document content; the ones a shrunk event may lose.
CONTENT_FIELDS: Final = ("fullDocumentBeforeChange", "fullDocument", "updateDescription")
