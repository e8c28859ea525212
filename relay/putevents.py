"""A lean PutEvents client: boto3's `put_events(Entries=...)` call at a fraction of the CPU.

botocore spends milliseconds of CPU per call on request building and event hooks; the relay makes
one call per 10 changes, so that cost dominated its per-event budget. This client takes what
botocore resolves once (endpoint, region) from a boto3 client and refreshable credentials from the
session, then per call only serialises JSON, signs with botocore's own `SigV4Auth`, and sends on a
persistent connection per thread. Errors are raised as botocore's own exception types
(`ClientError` with the AWS error code, `ReadTimeoutError`, `EndpointConnectionError`), so the
forwarder's retry and dead-letter logic is the same for both clients.
"""

import datetime as dt
import http.client
import json
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

SERVICE = "events"
TARGET = "AWSEvents.PutEvents"
CONTENT_TYPE = "application/x-amz-json-1.1"


def _entry_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    time = out.get("Time")
    if isinstance(time, dt.datetime):
        # The JSON protocol carries timestamps as epoch seconds.
        out["Time"] = time.timestamp()
    return out


class LeanPutEventsClient:
    """`put_events(Entries=...)` over one persistent HTTP(S) connection per calling thread."""

    def __init__(self, boto_client: Any, *, credentials: Any, timeout_s: float) -> None:
        """`credentials`: botocore credentials, refreshable ones for an ECS task role."""
        meta = boto_client.meta
        self.endpoint_url: str = meta.endpoint_url
        parts = urlsplit(self.endpoint_url)
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        default_port = (self._https and self._port == 443) or (not self._https and self._port == 80)
        self._host = self._hostname if default_port else f"{self._hostname}:{self._port}"
        self._path = parts.path or "/"
        self._timeout_s = timeout_s
        self._region: str = meta.region_name
        self._url = f"{parts.scheme}://{self._host}{self._path}"
        # `get_frozen_credentials` renews refreshable credentials (ECS task role) in time.
        self._credentials = credentials
        self._ssl = ssl.create_default_context() if self._https else None
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(
                    self._hostname, self._port, timeout=self._timeout_s, context=self._ssl
                )
            else:
                connection = http.client.HTTPConnection(
                    self._hostname, self._port, timeout=self._timeout_s
                )
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def signed_headers(self, body: bytes) -> dict[str, str]:
        """The headers of one PutEvents POST of `body`, signed by botocore's SigV4 signer."""
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
        )
        frozen = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, SERVICE, self._region).add_auth(request)
        return dict(request.headers.items())

    def put_events(self, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        body = json.dumps({"Entries": [_entry_json(entry) for entry in Entries]}).encode("utf-8")
        headers = self.signed_headers(body)
        connection = self._connection()
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError as error:
            self._drop_connection()
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except (OSError, http.client.HTTPException) as error:
            self._drop_connection()
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        if response.getheader("connection", "").lower() == "close":
            self._drop_connection()
        if response.status == 200:
            parsed: dict[str, Any] = json.loads(payload)
            return parsed
        raise _client_error(response.status, payload, response.getheader("x-amzn-ErrorType"))


def _client_error(status: int, payload: bytes, error_type: str | None) -> ClientError:
    try:
        parsed = json.loads(payload) if payload else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    raw_code = str(parsed.get("__type") or error_type or f"HTTP{status}")
    code = raw_code.rsplit("#", 1)[-1].split(":", 1)[0]
    message = str(
        parsed.get("message") or parsed.get("Message") or payload[:200].decode("utf-8", "replace")
    )
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutEvents")
