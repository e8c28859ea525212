"""The lean PutEvents client: signed as botocore's SigV4; AWS errors mapped as botocore does."""

import datetime as dt
import json
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.putevents import (
    CONTENT_TYPE,
    TARGET,
    LeanPutEventsClient,
    SigV4Signer,
    _client_error,
    _entry_json,
    request_body,
)

NOW = dt.datetime(2026, 12, 3, 14, 30, 0, tzinfo=dt.UTC)


def lean_client(endpoint: str, token: str | None = None) -> LeanPutEventsClient:
    boto_client = boto3.client("events", region_name="eu-west-1", endpoint_url=endpoint)
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    return LeanPutEventsClient(boto_client, credentials=credentials, timeout_s=5)


@pytest.mark.parametrize("token", [None, "session-token"])
def test_requests_are_signed_for_eventbridge_in_the_clients_region(token):
    # GIVEN a client for a regional endpoint
    client = lean_client("https://events.eu-west-1.amazonaws.com", token)

    # WHEN a body is signed
    headers = client.signed_headers(b'{"Entries": []}')

    # THEN botocore's SigV4 scope, signed headers and target are all there
    authorization = headers["Authorization"]
    day = headers["X-Amz-Date"][:8]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{day}/eu-west-1/")
    assert "/events/aws4_request" in authorization
    assert "SignedHeaders=content-type;host;x-amz-date" in authorization
    assert headers["X-Amz-Target"] == "AWSEvents.PutEvents"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers.get("X-Amz-Security-Token") == token


def test_a_new_signature_for_every_body():
    client = lean_client("http://127.0.0.1:4010")
    first = client.signed_headers(b"{}")["Authorization"]
    second = client.signed_headers(b'{"Entries": [{}]}')["Authorization"]
    assert first != second


@pytest.mark.parametrize(
    ("status", "payload", "header", "code"),
    [
        (400, b'{"__type": "ThrottlingException", "message": "slow"}', None, "ThrottlingException"),
        (
            400,
            b'{"__type": "com.amazon.coral#AccessDeniedException"}',
            None,
            "AccessDeniedException",
        ),
        (500, b"", "InternalException:http://internal", "InternalException"),
        (503, b"<html>unavailable</html>", None, "HTTP503"),
    ],
)
def test_aws_errors_become_client_errors_with_the_aws_code(status, payload, header, code):
    error = _client_error(status, payload, header)

    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_time_is_sent_as_epoch_seconds():
    entry = {"Source": "s", "Time": NOW}

    assert _entry_json(entry)["Time"] == NOW.timestamp()
    assert entry["Time"] is NOW  # the caller's entry is left as it was (it may be re-sent)


def botocore_headers(url: str, body: bytes, credentials: Credentials, region: str, at: dt.datetime):
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(credentials.get_frozen_credentials(), "events", region).add_auth(request)
    return dict(request.headers.items())


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    token=st.one_of(st.none(), st.text("abcXYZ019+/=", min_size=1, max_size=40)),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]),
    url=st.sampled_from(
        [
            "https://events.eu-west-1.amazonaws.com",
            "https://events.eu-west-1.amazonaws.com:443/",
            "http://127.0.0.1:4010",
            "http://localhost:8080/events path/",
        ]
    ),
    at=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2099, 12, 31)),
)
def test_the_lean_signature_is_botocores_signature(body, token, region, url, at):
    # GIVEN credentials, an endpoint, a region, a body and a moment
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    at = at.replace(microsecond=0, tzinfo=dt.UTC)
    boto_client = boto3.client("events", region_name=region, endpoint_url=url)
    client = LeanPutEventsClient(boto_client, credentials=credentials, timeout_s=5)

    # WHEN both sign the same POST
    with mock.patch("relay.putevents.time.time", return_value=at.timestamp()):
        lean = client.signed_headers(body)
    reference = botocore_headers(client.endpoint_url, body, credentials, region, at)

    # THEN the headers, and so the signature, are the same
    assert lean["Authorization"] == reference["Authorization"]
    assert lean["X-Amz-Date"] == reference["X-Amz-Date"]
    assert lean.get("X-Amz-Security-Token") == reference.get("X-Amz-Security-Token")


def test_the_signing_key_is_derived_again_on_a_new_day_or_secret():
    signer = SigV4Signer(service="events", region="us-east-1", host="h", path="/")
    first = Credentials("AKID", "secret-1").get_frozen_credentials()
    second = Credentials("AKID", "secret-2").get_frozen_credentials()
    day = dt.datetime(2026, 12, 3, 23, 59, 59, tzinfo=dt.UTC).timestamp()

    one = signer.headers(b"{}", {}, first, now=day)["Authorization"]
    again = signer.headers(b"{}", {}, first, now=day)["Authorization"]
    next_day = signer.headers(b"{}", {}, first, now=day + 1)["Authorization"]
    rotated = signer.headers(b"{}", {}, second, now=day)["Authorization"]

    assert one == again
    assert len({one, next_day, rotated}) == 3


def test_the_body_is_the_entries_as_boto3_would_send_them():
    entries: list[dict[str, object]] = [
        {"Source": "s", "DetailType": "d", "Detail": '{"a":"ñ"}', "Time": NOW},
        {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "bus"},
    ]

    body = json.loads(request_body(entries))

    assert body == {
        "Entries": [
            {"Source": "s", "DetailType": "d", "Detail": '{"a":"ñ"}', "Time": NOW.timestamp()},
            {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "bus"},
        ]
    }
