"""Entry sizes are counted as EventBridge counts them, and the limit is enforced."""

import datetime as dt

import pytest

from change_contract import (
    DEFAULT_MAX_REQUEST_BYTES,
    EntryTooLargeError,
    check_entry_size,
    encode_change,
    entry_size,
    request_size,
)
from localdev.samples import LECHE, change, product


def test_size_matches_a_hand_computed_entry():
    entry = {
        "Source": "mongodb.changestream",  # 20 bytes
        "DetailType": "MongoDB Change Event",  # 20 bytes
        "Detail": '{"a":"ñ"}',  # 9 characters, ñ is 2 bytes in UTF-8: 10 bytes
        "Resources": ["arn:x"],  # 5 bytes
        "Time": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),  # counted as 14 bytes
        "EventBusName": "not counted",
    }
    assert entry_size(entry) == 20 + 20 + 10 + 5 + 14


def test_time_counts_only_when_given():
    entry = {"Source": "s", "DetailType": "d", "Detail": "{}"}
    assert entry_size(entry) == 4
    assert entry_size({**entry, "Time": None}) == 4


def test_request_size_is_the_sum_of_its_entries():
    entry = {"Source": "s", "DetailType": "d", "Detail": "{}"}
    assert request_size([entry, entry, entry]) == 12


@pytest.mark.parametrize("fast", [True, False])
def test_encoded_change_reports_its_size_in_utf8_bytes(fast):
    # GIVEN a product whose name is not ASCII: the fast path writes it as UTF-8, so the Detail's
    # bytes outnumber its characters (json_util escapes it as \u00f1 instead)
    document = product(LECHE, "Leche de cabra ñ, 1 l", 3)

    encoded = encode_change(
        change("insert", 1, document_id=LECHE, fullDocument=document), fast=fast
    )

    assert encoded.entry["Detail"].isascii() is not fast
    assert encoded.size == entry_size(encoded.entry)


def test_a_detail_length_given_by_the_caller_is_counted_instead_of_encoding_it_again():
    entry = {"Source": "s", "DetailType": "d", "Detail": '{"a":"ñ"}'}

    assert entry_size(entry) == 1 + 1 + 10
    assert entry_size(entry, detail_bytes=10) == 1 + 1 + 10
    assert entry_size(entry, detail_bytes=99) == 1 + 1 + 99


def test_default_limit_is_one_megabyte():
    assert DEFAULT_MAX_REQUEST_BYTES == 1024 * 1024


def test_limit_is_enforced_and_names_the_sizes():
    big = change("insert", 1, document_id=LECHE, fullDocument=product(LECHE, "x" * 2000, 3))
    encoded = encode_change(big)
    assert check_entry_size(encoded.entry, 5000) == encoded.size
    with pytest.raises(
        EntryTooLargeError, match=r"entry is \d+ bytes, over the limit of 1000"
    ) as caught:
        check_entry_size(encoded.entry, 1000, event_id=encoded.event_id)
    assert caught.value.event_id == encoded.event_id
    assert caught.value.size == encoded.size
