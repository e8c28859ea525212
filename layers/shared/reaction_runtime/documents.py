"""How functions name a document in messages, keys and logs: one rendering of `_id` for all."""

import json
from typing import Any

from bson import ObjectId

from change_contract.ejson import to_plain


def document_id_text(document_id: Any) -> str:
    """An `_id` as text: the hex of an ObjectId, a string as is, else compact Extended JSON."""
    if isinstance(document_id, ObjectId):
        return str(document_id)
    if isinstance(document_id, str):
        return document_id
    return json.dumps(to_plain(document_id), sort_keys=True, separators=(",", ":"))
