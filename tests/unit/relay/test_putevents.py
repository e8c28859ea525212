"""The lean PutEvents client: signed by botocore's SigV4; AWS errors mapped as botocore does."""

import datetime as dt

import boto3
import pytest
from botocore.credentials import Credentials

from relay.putevents import LeanPutEventsClient, _client_error, _entry_json

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
