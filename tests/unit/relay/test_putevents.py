"""The lean PutEvents client: signatures identical to botocore's, AWS errors mapped the same way."""

import datetime as dt
import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from relay.putevents import SigV4Signer, _client_error, _entry_json

NOW = dt.datetime(2026, 12, 3, 14, 30, 0, tzinfo=dt.UTC)


class _FixedClock(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW

    @classmethod
    def utcnow(cls):
        return NOW.replace(tzinfo=None)


@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_signature_is_exactly_botocores(monkeypatch, token):
    # GIVEN the same credentials, body and instant for both signers
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = json.dumps({"Entries": [{"Source": "s", "Detail": "{}"}]}).encode()
    request = AWSRequest(
        method="POST",
        url="https://events.eu-west-1.amazonaws.com/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSEvents.PutEvents",
        },
    )
    import botocore.auth

    monkeypatch.setattr(botocore.auth.datetime, "datetime", _FixedClock)  # type: ignore[attr-defined]

    # WHEN both sign
    SigV4Auth(credentials, "events", "eu-west-1").add_auth(request)
    ours = SigV4Signer("eu-west-1").headers(
        "events.eu-west-1.amazonaws.com", body, credentials.get_frozen_credentials(), NOW
    )

    # THEN the Authorization headers are identical
    assert ours["authorization"] == request.headers["Authorization"]


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
