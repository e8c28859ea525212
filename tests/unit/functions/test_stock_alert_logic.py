"""The stock alert's pure parts: reading quantities of any BSON type, levels, message limits."""

import datetime as dt
from decimal import Decimal

import pytest
from bson import Decimal128, Int64
from hypothesis import given
from hypothesis import strategies as st

from stock_alert import Alert, Level, alert_message, classify, read_number
from stock_alert.quantity import format_number

_decimals = st.decimals(
    min_value=Decimal("-1e6"), max_value=Decimal("1e6"), allow_nan=False, places=4
)


@given(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
)
def test_ints_and_doubles_read_exactly(value):
    reading = read_number({"cantidad": value}, "cantidad")
    assert reading.value == Decimal(value)


@given(_decimals, st.integers(0, 100))
def test_decimal128_compares_like_the_number_it_holds(value, threshold):
    reading = read_number({"cantidad": Decimal128(value)}, "cantidad")
    assert reading.value is not None
    expected = (
        Level.OUT_OF_STOCK if value <= 0 else Level.LOW_STOCK if value <= threshold else Level.OK
    )
    assert classify(reading.value, Decimal(threshold)) is expected


def test_int64_is_a_number():
    assert read_number({"cantidad": Int64(2**40)}, "cantidad").value == Decimal(2**40)


def test_dotted_quantity_path():
    assert read_number({"stock": {"cantidad": 3}}, "stock.cantidad").value == Decimal(3)
    assert read_number({"stock": 3}, "stock.cantidad").problem == "missing"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("5", "string"),
        (None, "null"),
        (False, "boolean"),
        (float("inf"), "not a finite number"),
        (Decimal128("Infinity"), "not a finite number"),
        ([5], "list"),
        ({"n": 5}, "dict"),
    ],
)
def test_other_values_are_problems_not_errors(value, problem):
    reading = read_number({"cantidad": value}, "cantidad")
    assert reading.value is None
    assert reading.problem == problem


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal(4), "4"), (Decimal("4.50"), "4.5"), (Decimal("1E+3"), "1000"), (Decimal("-2"), "-2")],
)
def test_numbers_are_shown_plainly(value, text):
    assert format_number(value) == text


@given(
    name=st.one_of(st.none(), st.text()),
    quantity=_decimals,
    threshold=st.integers(0, 10**6),
    language=st.sampled_from(["es", "en"]),
    level=st.sampled_from([Level.LOW_STOCK, Level.OUT_OF_STOCK]),
)
def test_every_alert_fits_sns_limits(name, quantity, threshold, language, level):
    alert = Alert(
        level=level,
        product_name=name,
        product_id="6750a1f0c2b4a1e0f0a1b004",
        quantity=quantity,
        threshold=Decimal(threshold),
        database="clase",
        collection="productos",
        when=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
        event_id="826B115CE2000000012B042C0100296E5A1004",
    )

    request = alert_message(alert, language).request("arn:aws:sns:us-east-1:1:t")

    texts = alert_message(alert, language).texts
    assert set(texts) == {"default", "email", "sms"}
    assert len(texts["sms"].encode("utf-8")) <= 140
    assert len(request["Subject"]) < 100
    assert not any(ord(char) < 32 for char in request["Subject"])
    assert request["MessageAttributes"]["severity"]["StringValue"] == level.value
