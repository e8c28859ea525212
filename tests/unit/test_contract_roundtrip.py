"""Property: any BSON document survives encode -> JSON text -> decode unchanged."""

import datetime as dt
import json
import uuid

import fastejson
import pytest
from bson import Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, encode
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.raw_bson import RawBSONDocument
from bson.tz_util import utc as BSON_UTC
from hypothesis import given, settings
from hypothesis import strategies as st

from change_contract import ContractError, decode_event, ejson, encode_change, entry_size
from change_contract.ejson import (
    CODEC_OPTIONS,
    STREAM_OPTIONS,
    ChangeDocument,
    _decimal_text,
    fast_path_available,
    render,
)
from change_contract.encode import encode_backfill
from localdev.samples import lambda_event
from tests.unit.bson_strategies import documents_of

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Field names: any text BSON accepts (no NUL), unicode and dots included, not starting with `$`
# (Extended JSON reserves `$`-keys for type wrappers; MongoDB discourages them in documents).
keys = st.text(min_size=0, max_size=12).filter(
    lambda key: "\x00" not in key and not key.startswith("$")
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(INT64_MIN, INT64_MAX).map(Int64),
    st.sampled_from([INT64_MIN, INT64_MAX, 2**31, -(2**31) - 1]).map(Int64),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.builds(
        lambda digits, exponent: Decimal128(f"{digits}E{exponent}"),
        st.integers(-(10**20), 10**20),
        st.integers(-30, 30),
    ),
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.just(dt.UTC),
    ).map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000)),
    st.binary(max_size=16),
    st.uuids(),
    st.builds(ObjectId),
)

# Everything else BSON carries, for comparing the two renderers (values that do not all compare
# equal after a round trip: NaN, dates outside Python's range, regular expressions).
rare_scalars = st.one_of(
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324]),
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(Regex, st.text(max_size=8).filter(lambda text: "\x00" not in text), st.just("im")),
    st.sampled_from([MinKey(), MaxKey()]),
    st.builds(Code, st.text(max_size=8).filter(lambda text: "\x00" not in text)),
    st.builds(Binary, st.binary(max_size=16), st.sampled_from([0, 1, 3, 5, 128])),
    st.builds(Binary, st.binary(min_size=16, max_size=16), st.just(4)),
    st.integers(-(2**62), 2**62).map(DatetimeMS),
    st.datetimes(timezones=st.just(dt.UTC)).map(
        lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000)
    ),
)


documents = documents_of(keys, scalars, max_list=3)
any_bson_documents = documents_of(keys, st.one_of(scalars, rare_scalars), max_list=3)


def change_around(document: dict) -> dict:
    return {
        "_id": {"_data": "826750A1F0000000012B0429296E1404"},
        "operationType": "update",
        "clusterTime": Timestamp(1_796_300_000, 7),
        "wallTime": dt.datetime(2026, 12, 3, 11, 33, 20, 123000, tzinfo=dt.UTC),
        "ns": {"db": "clase", "coll": "productos"},
        "documentKey": {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b001")},
        "updateDescription": {
            "updatedFields": document,
            "removedFields": [],
            "truncatedArrays": [],
        },
        "fullDocument": {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b001"), "doc": document},
        "fullDocumentBeforeChange": document,
    }


def round_trip(change, *, fast: bool):
    encoded = encode_change(change, bus_name="bus", fast=fast)
    # What Lambda gets: the JSON text parsed by a plain JSON parser, inside the envelope.
    delivered = json.loads(json.dumps(lambda_event(encoded.entry)))
    return decode_event(delivered).detail


@settings(max_examples=150, deadline=None)
@given(documents)
def test_python_documents_round_trip(document):
    # GIVEN a change carrying the document as plain Python values
    change = change_around(document)

    # WHEN it is encoded with json_util and decoded
    detail = round_trip(change, fast=False)

    # THEN every copy of the document comes back equal
    assert detail.update_description.updated_fields == document
    assert detail.full_document == {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b001"), "doc": document}
    assert detail.full_document_before_change == document


@settings(max_examples=150, deadline=None)
@given(documents)
def test_raw_bson_documents_round_trip_on_the_fast_path(document):
    # GIVEN the change as the relay reads it: RawBSONDocument, with the relay's codec options
    assert fast_path_available()
    raw = RawBSONDocument(
        encode(change_around(document), codec_options=CODEC_OPTIONS), codec_options=CODEC_OPTIONS
    )

    # WHEN it is encoded on the fast path (orjson) and decoded
    detail = round_trip(raw, fast=True)

    # THEN the document comes back equal, as on the json_util path
    assert detail.full_document_before_change == document
    assert detail.update_description.updated_fields == document


@settings(max_examples=200, deadline=None)
@given(any_bson_documents)
def test_fast_and_portable_paths_give_the_same_json_value(document):
    # GIVEN a change carrying any BSON value, as the relay reads it and as a plain mapping
    change = change_around(document)
    raw = RawBSONDocument(encode(change, codec_options=CODEC_OPTIONS), codec_options=CODEC_OPTIONS)

    read = ChangeDocument(raw.raw, STREAM_OPTIONS)
    assert dict(read["_id"]) == change["_id"]  # what pymongo reads first

    # WHEN both renderers encode it
    reference = encode_change(raw, fast=False)
    portable = json.loads(reference.entry["Detail"])
    others = [
        encode_change(raw, fast=True),
        encode_change(read, fast=True),
        encode_change(read, fast=False),
        encode_change(change, fast=True),
    ]

    # THEN orjson (from raw BSON, from the relay's document or from Python values) writes what
    # json_util writes, and each entry's size is its text counted again as EventBridge counts it
    for encoded in others:
        assert json.loads(encoded.entry["Detail"]) == portable
    for encoded in [reference, *others]:
        assert encoded.size == entry_size(encoded.entry)


def test_values_json_has_no_number_for_keep_their_extended_json_type_on_the_fast_path():
    change = change_around({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})

    detail = json.loads(encode_change(change, fast=True).entry["Detail"])

    assert detail["fullDocumentBeforeChange"] == {
        "nan": {"$numberDouble": "NaN"},
        "inf": {"$numberDouble": "Infinity"},
        "ninf": {"$numberDouble": "-Infinity"},
    }


def test_dates_are_spelled_as_json_util_spells_them_on_the_fast_path():
    # GIVEN dates with and without milliseconds, before 1970 and beyond Python's range
    document = {
        "ms": dt.datetime(2026, 12, 3, 11, 33, 20, 123000, tzinfo=dt.UTC),
        "whole": dt.datetime(2026, 12, 3, 11, 33, 20, tzinfo=dt.UTC),
        "before_epoch": dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=dt.UTC),
        "far": DatetimeMS(2**60),
    }

    # WHEN rendered on the fast path
    detail = encode_change(change_around(document), fast=True).entry["Detail"]

    # THEN the text is json_util's, byte for byte, for each date
    rendered = json.loads(detail)["fullDocumentBeforeChange"]
    assert rendered["ms"] == {"$date": "2026-12-03T11:33:20.123Z"}
    assert rendered["whole"] == {"$date": "2026-12-03T11:33:20Z"}
    assert rendered["before_epoch"] == {"$date": {"$numberLong": "-14182940000"}}
    assert rendered["far"] == {"$date": {"$numberLong": str(2**60)}}


def test_aware_utc_dates_rendered_directly_are_spelled_like_decoded_ones():
    # GIVEN the same instants as aware UTC dates, in either UTC zone, and as naive ones
    ms = dt.datetime(2026, 12, 3, 11, 33, 20, 123000)
    whole = dt.datetime(2026, 12, 3, 11, 33, 20)
    for zone in (dt.UTC, BSON_UTC, None):
        # WHEN rendered without a BSON decode first
        text = render({"ms": ms.replace(tzinfo=zone), "whole": whole.replace(tzinfo=zone)})

        # THEN each is json_util's spelling
        assert json.loads(text) == {
            "ms": {"$date": "2026-12-03T11:33:20.123Z"},
            "whole": {"$date": "2026-12-03T11:33:20Z"},
        }, zone


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(min_size=16, max_size=16),
        st.builds(
            lambda digits, exponent: Decimal128(f"{digits}E{exponent}").bid,
            st.integers(-(10**34) + 1, 10**34 - 1),
            st.integers(-6176, 6111),
        ),
    )
)
def test_decimal_text_reads_any_bid_as_pymongo_prints_it(bid):
    # Any 16 bytes: canonical values, NaN, infinities, the large form, too-long coefficients.
    assert _decimal_text.__wrapped__(bid) == str(Decimal128.from_bid(bid))


def test_decimal_text_edges_match_pymongo():
    for text in ("0", "-0", "0E-6176", "1E+6111", "-9999999999999999999999999999999999E-6176"):
        bid = Decimal128(text).bid
        assert _decimal_text.__wrapped__(bid) == str(Decimal128.from_bid(bid)), text
    for text in ("NaN", "-NaN", "Infinity", "-Infinity"):
        bid = Decimal128(text).bid
        assert _decimal_text.__wrapped__(bid) == str(Decimal128.from_bid(bid)), text


def test_numbers_stay_json_numbers_so_eventbridge_numeric_filters_work():
    change = change_around({"cantidad": 7})
    change["fullDocument"] = {"_id": ObjectId(), "cantidad": Int64(7), "precio": 1.5}
    detail = json.loads(encode_change(change).entry["Detail"])
    assert detail["fullDocument"]["cantidad"] == 7
    assert detail["fullDocument"]["precio"] == 1.5


def test_uuid_round_trips_as_uuid():
    value = uuid.UUID("0f7c1f7e-9a5b-4c43-8d1e-3b4b3c2a1d00")
    assert round_trip(change_around({"u": value}), fast=False).full_document_before_change == {
        "u": value
    }


class _CountingRenderer:
    """fastejson with its `scan` calls and fall-backs counted."""

    def __init__(self) -> None:
        self.scans = 0
        self.fell_back = 0
        self.FallBackError = fastejson.FallBackError

    def scan(self, *args):
        self.scans += 1
        try:
            return fastejson.scan(*args)
        except fastejson.FallBackError:
            self.fell_back += 1
            raise


@pytest.mark.parametrize(
    ("extra", "falls_back"),
    [
        (
            {
                "nota": "leche entera",
                "precio": Decimal128("1.25"),
                "vence": dt.datetime(2027, 1, 2),
            },
            False,
        ),
        ({"patron": Regex("^le", "i")}, True),
        ({"codigo": Code("return 1")}, True),
    ],
)
def test_a_raw_change_is_rendered_by_fastejson_or_its_fall_back_alike(
    monkeypatch, extra, falls_back
):
    # GIVEN a change as the relay reads it, and fastejson with its calls counted
    assert ejson.renderer_name() == "fastejson"
    change = change_around({"nombreProducto": "Leche", "cantidad": 5, **extra})
    raw = RawBSONDocument(encode(change, codec_options=CODEC_OPTIONS), codec_options=CODEC_OPTIONS)
    counting = _CountingRenderer()

    # WHEN it is encoded on the fast path, and again with fastejson absent
    monkeypatch.setattr(ejson, "_NATIVE", counting)
    native = encode_change(raw, bus_name="bus")
    monkeypatch.setattr(ejson, "_NATIVE", None)
    general = encode_change(raw, bus_name="bus")

    # THEN fastejson read it (or stepped aside for the value it leaves to pymongo), and the entry
    # is the same either way, byte for byte, with the same size
    assert (counting.scans, counting.fell_back) == (1, int(falls_back))
    assert native.entry == general.entry
    assert native.size == general.size == entry_size(native.entry)
    assert native.resume_token == general.resume_token


def test_bad_bson_that_fastejson_steps_aside_for_is_named_by_the_general_path():
    # GIVEN a change whose product name is not valid UTF-8 (a legacy driver's bytes)
    change = change_around({"nombreProducto": "Leche"})
    data = bytearray(encode(change, codec_options=CODEC_OPTIONS))
    at = data.index(b"Leche")
    data[at : at + 2] = b"\xc3\x28"
    raw = RawBSONDocument(bytes(data), codec_options=CODEC_OPTIONS)

    # WHEN it is encoded on the fast path
    with pytest.raises(ContractError) as raised:
        encode_change(raw, bus_name="bus")

    # THEN the error is pymongo's, naming the event, not fastejson's fall-back
    assert raised.value.event_id == change["_id"]["_data"]
    assert "utf-8" in str(raised.value).lower()
    assert "FallBack" not in str(raised.value)


def test_a_backfill_read_as_python_values_is_rendered_by_fastejson_too(monkeypatch):
    # GIVEN a document read by the backfill, as Python values, and fastejson with its calls counted
    document = {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b002"), "nombreProducto": "Pan", "cantidad": 3}
    ns = {"db": "clase", "coll": "productos"}
    read_at = dt.datetime(2026, 12, 4, 23, 0, 0, 250_000, tzinfo=dt.UTC)
    counting = _CountingRenderer()

    # WHEN it is encoded on the fast path, and again with fastejson absent
    monkeypatch.setattr(ejson, "_NATIVE", counting)
    native = encode_backfill(document, ns, Timestamp(1_796_425_000, 1), read_at=read_at)
    monkeypatch.setattr(ejson, "_NATIVE", None)
    general = encode_backfill(document, ns, Timestamp(1_796_425_000, 1), read_at=read_at)

    # THEN fastejson rendered it (the mapping encoded to BSON first), byte for byte alike
    assert (counting.scans, counting.fell_back) == (1, 0)
    assert native.entry == general.entry
    assert json.loads(native.entry["Detail"])["origin"] == "backfill"


@pytest.mark.parametrize(
    ("native", "orjson_module", "name"),
    [(True, True, "fastejson"), (False, True, "orjson"), (False, False, "json_util")],
)
def test_the_renderer_in_use_is_named_for_the_relays_log(monkeypatch, native, orjson_module, name):
    if not native:
        monkeypatch.setattr(ejson, "_NATIVE", None)
    if not orjson_module:
        monkeypatch.setattr(ejson, "_ORJSON", None)

    assert ejson.renderer_name() == name


def test_a_change_in_a_transaction_keeps_its_session_fields_alike_with_fastejson(monkeypatch):
    # GIVEN a change written in a transaction, as the relay reads it
    change = {
        **change_around({"cantidad": 4}),
        "txnNumber": Int64(7),
        "lsid": {"id": Binary(uuid.UUID(int=5).bytes, 4), "uid": Binary(b"u" * 32, 0)},
    }
    raw = RawBSONDocument(encode(change, codec_options=CODEC_OPTIONS), codec_options=CODEC_OPTIONS)

    # WHEN it is encoded with fastejson and without it
    native = encode_change(raw, bus_name="bus")
    monkeypatch.setattr(ejson, "_NATIVE", None)
    general = encode_change(raw, bus_name="bus")

    # THEN both write the session fields, byte for byte alike
    assert native.entry == general.entry
    detail = json.loads(native.entry["Detail"])
    assert detail["txnNumber"] == 7
    assert detail["lsid"]["id"] == {
        "$binary": {"base64": "AAAAAAAAAAAAAAAAAAAABQ==", "subType": "04"}
    }
