"""The change-event contract: one definition of what flows from MongoDB to EventBridge to Lambda.

The relay encodes with it, the functions decode with it, the samples and tests are generated from
it. Nothing here talks to AWS except the optional S3 payload loader used when decoding a pointer.
"""

from change_contract.constants import (
    BACKFILL_ORIGIN,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_SOURCE,
    DETAIL_TYPE_CHANGE,
    DETAIL_TYPE_GAP,
    OPERATION_TYPES,
    SCHEMA_VERSION,
)
from change_contract.decode import PayloadLoader, S3PayloadLoader, decode_event
from change_contract.encode import (
    EncodedChange,
    PayloadRef,
    backfill_change,
    encode_backfill,
    encode_change,
    encode_gap,
)
from change_contract.errors import ContractError, EntryTooLargeError
from change_contract.models import ChangeDetail, ChangeEvent, ClusterTime, GapDetail
from change_contract.post_image import apply_update_description
from change_contract.size import check_entry_size, entry_size, request_size

__all__ = [
    "BACKFILL_ORIGIN",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_SOURCE",
    "DETAIL_TYPE_CHANGE",
    "DETAIL_TYPE_GAP",
    "OPERATION_TYPES",
    "SCHEMA_VERSION",
    "ChangeDetail",
    "ChangeEvent",
    "ClusterTime",
    "ContractError",
    "EncodedChange",
    "EntryTooLargeError",
    "GapDetail",
    "PayloadLoader",
    "PayloadRef",
    "S3PayloadLoader",
    "apply_update_description",
    "backfill_change",
    "check_entry_size",
    "decode_event",
    "encode_backfill",
    "encode_change",
    "encode_gap",
    "entry_size",
    "request_size",
]
