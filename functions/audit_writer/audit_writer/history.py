"""Print one document's audit history, oldest first: when, who, operation, fields changed.

    python -m audit_writer.history --id 6750a1f0c2b4a1e0f0a1b001
    python -m audit_writer.history --id '{"$numberLong": "42"}' --store dynamodb
    python -m audit_writer.history --id sku-1 --ns clase.productos

Reads the same settings as the function (`AUDIT_STORE`, `MONGODB_URI`, `AUDIT_TABLE`...); the
options override them. A command-line tool: it prints, and never writes to the store.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from bson import ObjectId

from audit_writer.settings import AuditSettings, StoreKind
from audit_writer.stores import AuditStore, AuditStoreError, HistoryEntry, make_store
from change_contract import ejson
from reaction_runtime.env import ConfigError

HEADERS = ("WHEN", "WHO", "OPERATION", "FIELDS CHANGED")
# What the last column says when a change names no fields.
WHOLE_DOCUMENT = {
    "insert": "(new document)",
    "replace": "(whole document)",
    "delete": "(document deleted)",
    "update": "(none)",
    "baseline": "(existing document)",
}
EXIT_OK, EXIT_NO_RECORDS, EXIT_ERROR = 0, 1, 2
_HEX_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")


def parse_document_id(text: str) -> Any:
    """A document `_id` from the command line: 24 hex digits are an ObjectId; Extended JSON
    (`{"$oid": ...}`, `42`, `"sku-1"`) is parsed with its types; anything else is a string."""
    text = text.strip()
    if _HEX_OBJECT_ID.fullmatch(text):
        return ObjectId(text)
    try:
        return ejson.from_json(text)
    except ValueError:
        return text


def format_table(entries: Sequence[HistoryEntry]) -> str:
    """The history as an aligned text table with a header row."""
    rows = [HEADERS]
    for entry in entries:
        fields = ", ".join(entry.changed_fields) or WHOLE_DOCUMENT.get(entry.operation_type, "")
        rows.append((_when(entry.when), entry.actor, entry.operation_type, fields))
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADERS))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _namespace(text: str) -> tuple[str, str]:
    database, dot, collection = text.partition(".")
    if not dot or not database or not collection:
        raise argparse.ArgumentTypeError(f"expected <database>.<collection>, got {text!r}")
    return database, collection


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audit_writer.history",
        description="Print the audit history of one document, oldest first.",
    )
    parser.add_argument(
        "--id",
        required=True,
        dest="document_id",
        help="the document's _id: 24 hex digits (ObjectId), or Extended JSON",
    )
    parser.add_argument(
        "--store",
        choices=[kind.value for kind in StoreKind],
        help="where the records are (default: AUDIT_STORE, else mongodb)",
    )
    parser.add_argument(
        "--ns",
        type=_namespace,
        help="only records of this <database>.<collection> (the same _id may exist elsewhere)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    store: AuditStore | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command; `store` is for tests, which hand in their own."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    document_id = parse_document_id(args.document_id)
    try:
        if store is None:
            env = dict(os.environ if environ is None else environ)
            if args.store:
                env["AUDIT_STORE"] = args.store
            store = make_store(AuditSettings.from_env(env))
        entries = store.history(document_id, namespace=args.ns)
    except (ConfigError, AuditStoreError) as error:
        err.write(f"error: {error}\n")
        return EXIT_ERROR
    if not entries:
        shown = json.dumps(ejson.to_plain(document_id), ensure_ascii=False)
        err.write(f"no audit records for _id {shown}\n")
        return EXIT_NO_RECORDS
    out.write(format_table(entries))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
