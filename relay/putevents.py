"""A lean PutEvents client: boto3's `put_events(Entries=...)` call at a fraction of the CPU.

botocore spends milliseconds of CPU per call on request building, event hooks and signing; the
relay makes one call per 10 changes, so that cost dominated its per-event budget. This client
borrows what botocore resolves once (endpoint, region, refreshable credentials) from a boto3
client, then per call only serialises JSON, signs with SigV4 (signing key cached per day) and
sends on a persistent connection per thread. Errors are raised as botocore's own exception types
(`ClientError` with the AWS error code, `ReadTimeoutError`, `EndpointConnectionError`), so the
forwarder's retry and dead-letter logic is the same for both clients.
"""

import datetime as dt
import hashlib
import hmac
import http.client
import json
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

SERVICE = "events"
TARGET = "AWSEvents.PutEvents"
CONTENT_TYPE = "application/x-amz-json-1.1"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class SigV4Signer:
    """Signs PutEvents POSTs; the derived key is cached per (secret, day, region)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._key: tuple[tuple[str, str], bytes] | None = None

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key is not None and self._key[0] == (secret, day):
            return self._key[1]
        key = _hmac(("AWS4" + secret).encode("utf-8"), day)
        for part in (self.region, SERVICE, "aws4_request"):
            key = _hmac(key, part)
        self._key = ((secret, day), key)
        return key

    def headers(self, host: str, body: bytes, credentials: Any, now: dt.datetime) -> dict[str, str]:
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        headers = {
            "content-type": CONTENT_TYPE,
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-target": TARGET,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self.region}/{SERVICE}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
            ]
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day),
            to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers


def _entry_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    time = out.get("Time")
    if isinstance(time, dt.datetime):
        # The JSON protocol carries timestamps as epoch seconds.
        out["Time"] = time.timestamp()
    return out


class LeanPutEventsClient:
    """`put_events(Entries=...)` over one persistent HTTP(S) connection per calling thread."""

    def __init__(self, boto_client: Any, *, timeout_s: float) -> None:
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
        self._signer = SigV4Signer(meta.region_name)
        # Refreshable credentials (ECS task role): `get_frozen_credentials` renews them in time.
        self._credentials = boto_client._request_signer._credentials
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

    def put_events(self, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        body = json.dumps({"Entries": [_entry_json(entry) for entry in Entries]}).encode("utf-8")
        credentials = self._credentials.get_frozen_credentials()
        headers = self._signer.headers(self._host, body, credentials, dt.datetime.now(dt.UTC))
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
