"""`ChangeDocument`: the relay's change event, its resume token read without inflating the rest."""

import datetime as dt

import bson
import pytest
from bson import ObjectId, Timestamp
from bson import raw_bson as raw_bson_module
from bson.errors import InvalidBSON
from bson.raw_bson import RawBSONDocument

from change_contract import ContractError, encode_change
from change_contract.ejson import CODEC_OPTIONS, STREAM_OPTIONS, ChangeDocument

TOKEN = {"_data": "82675A1B2C000000012B022C0100296E5A1004"}


def change_fields(name: str = "Leche entera") -> dict:
    oid = ObjectId("6750a1f0c2b4a1e0f0a1b001")
    return {
        "_id": TOKEN,
        "operationType": "insert",
        "clusterTime": Timestamp(1_796_300_000, 1),
        "wallTime": dt.datetime(2026, 12, 4, 12, 0, 0, 250_000, tzinfo=dt.UTC),
        "fullDocument": {"_id": oid, "nombreProducto": name, "cantidad": 7},
        "ns": {"db": "clase", "coll": "productos"},
        "documentKey": {"_id": oid},
    }


@pytest.fixture
def inflations(monkeypatch):
    """Every time a `RawBSONDocument` inflates its top level, the bytes it inflated."""
    seen = []
    real = raw_bson_module._inflate_bson

    def counting(bson_bytes, codec_options, raw_array=False):
        seen.append(bytes(bson_bytes))
        return real(bson_bytes, codec_options, raw_array)

    monkeypatch.setattr(raw_bson_module, "_inflate_bson", counting)
    return seen


def test_the_token_pymongo_reads_comes_without_inflating_the_change(inflations):
    data = bson.encode(change_fields())
    change = ChangeDocument(data, STREAM_OPTIONS)

    token = change["_id"]

    assert inflations == []
    assert token == RawBSONDocument(data, CODEC_OPTIONS)["_id"]
    assert dict(token) == TOKEN
    assert bytes(token.raw) == bson.encode(TOKEN)


def test_every_other_field_reads_as_a_raw_bson_document_reads_it(inflations):
    data = bson.encode(change_fields())
    change = ChangeDocument(data, STREAM_OPTIONS)

    assert change["operationType"] == "insert"
    assert change["wallTime"] == dt.datetime(2026, 12, 4, 12, 0, 0, 250_000, tzinfo=dt.UTC)
    assert change["fullDocument"]["cantidad"] == 7
    assert list(change) == list(change_fields())
    assert len(inflations) == 2  # the change, then its fullDocument: lazily, as pymongo does


def in_order(*fields: dict) -> bytes:
    """BSON of the fields in the order given (`bson.encode` always writes `_id` first)."""
    elements = b"".join(bson.encode(field)[4:-1] for field in fields)
    return (len(elements) + 5).to_bytes(4, "little") + elements + b"\x00"


@pytest.mark.parametrize(
    "fields",
    [
        ({"operationType": "insert"}, {"_id": TOKEN}),  # `_id` not first
        ({"_id": "a-string-token"}, {"operationType": "insert"}),  # `_id` not a document
        ({"_idx": {"_data": "not-the-token"}}, {"_id": TOKEN}),  # a key that starts alike
        ({"ns": {"db": "clase"}}, {"_id": TOKEN}),  # another document first
    ],
    ids=["not-first", "not-a-document", "longer-key", "other-document-first"],
)
def test_other_layouts_find_the_token_the_ordinary_way(fields, inflations):
    expected = next(field["_id"] for field in fields if "_id" in field)
    change = ChangeDocument(in_order(*fields), STREAM_OPTIONS)

    token = change["_id"]

    assert len(inflations) == 1  # the change's top level, as a `RawBSONDocument` does
    assert token == expected if isinstance(expected, str) else dict(token) == expected


def test_a_token_whose_size_runs_past_the_change_is_invalid_bson_not_a_wrong_token():
    data = bytearray(bson.encode(change_fields()))
    data[9:13] = (len(data) + 100).to_bytes(4, "little")  # the token's own size field
    change = ChangeDocument(bytes(data), STREAM_OPTIONS)

    with pytest.raises(InvalidBSON):
        change["_id"]


def test_it_renders_exactly_what_a_raw_bson_document_of_the_same_bytes_renders():
    data = bson.encode(change_fields())

    ours = encode_change(ChangeDocument(data, STREAM_OPTIONS), bus_name="bus")
    plain = encode_change(RawBSONDocument(data, CODEC_OPTIONS), bus_name="bus")

    assert ours.entry == plain.entry
    assert ours.size == plain.size
    assert '"nombreProducto":"Leche entera"' in ours.entry["Detail"]


def test_bytes_that_do_not_decode_still_give_pymongo_its_token_and_fail_the_encoder():
    # GIVEN a change whose document holds invalid UTF-8 (a legacy driver wrote it)
    broken = bson.encode(change_fields("XXXX")).replace(b"XXXX", b"\xff\xfeXX")
    change = ChangeDocument(broken, STREAM_OPTIONS)

    # WHEN pymongo reads the token, THEN it gets it, and the stream can go on
    assert dict(change["_id"]) == TOKEN

    # AND the encoder refuses the change, naming it, so the relay dead-letters its raw bytes
    with pytest.raises(ContractError) as refused:
        encode_change(change, bus_name="bus")
    assert refused.value.event_id == TOKEN["_data"]
    assert "cannot render as Extended JSON" in str(refused.value)
