"""A lean PutEvents client: boto3's `put_events(Entries=...)` call at a fraction of the CPU.

botocore spends hundreds of microseconds of CPU per call on request building, event hooks and its
general-purpose signer; the relay makes one call per 10 changes, so that cost dominated its
per-event budget. This client takes what botocore resolves once (endpoint, region) from a boto3
client and refreshable credentials from the session, then per call only serialises JSON (orjson),
signs with `SigV4Signer` (the same signature as botocore's `SigV4Auth`, tested against it, with the
day's signing key kept), and sends on a persistent connection: one per thread for `put_events`
(`PostConnection`), or a pool of them on the caller's asyncio loop for `put_events_async`
(`AsyncPostConnection`), which is how the forwarder keeps its calls in flight on one thread.
Errors are raised as botocore's own exception types (`ClientError` with the AWS error code,
`ReadTimeoutError`, `EndpointConnectionError`), so the forwarder's retry and dead-letter logic is
the same for both clients. Never logs request bodies.
"""

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import ssl
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from relay.http_connection import AsyncPostConnection, PostConnection, Response

SERVICE = "events"
TARGET = "AWSEvents.PutEvents"
CONTENT_TYPE = "application/x-amz-json-1.1"
_HEADERS = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}


def _entry_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    time_value = out.get("Time")
    if isinstance(time_value, dt.datetime):
        # The JSON protocol carries timestamps as epoch seconds.
        out["Time"] = time_value.timestamp()
    return out


def request_body(entries: Sequence[Mapping[str, Any]]) -> bytes:
    """The PutEvents request body (JSON protocol 1.1) for `entries` as boto3 takes them."""
    return orjson.dumps({"Entries": [_entry_json(entry) for entry in entries]})


class SigV4Signer:
    """AWS Signature Version 4 for one service, region and endpoint, as botocore's `SigV4Auth`.

    Signs POSTs to a fixed path with a fixed set of headers, which is all PutEvents needs, so it
    skips botocore's generic request handling; the signing key is derived once per day and
    secret. `tests/unit/relay/test_putevents.py` checks every signature against botocore's.
    """

    def __init__(self, *, service: str, region: str, host: str, path: str) -> None:
        self._service = service
        self._region = region
        self._host = host
        self._path = quote(path or "/", safe="/~")
        self._key: tuple[str, str, bytes] | None = None  # (day, secret, derived key)

    def _signing_key(self, day: str, secret: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == day and cached[1] == secret:
            return cached[2]
        key = _hmac(f"AWS4{secret}".encode(), day)
        for part in (self._region, self._service, "aws4_request"):
            key = _hmac(key, part)
        self._key = (day, secret, key)
        return key

    def headers(
        self, body: bytes, headers: Mapping[str, str], credentials: Any, *, now: float
    ) -> dict[str, str]:
        """`headers` plus host, date, token and Authorization for a POST of `body` at `now`."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = stamp[:8]
        signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
        signed["host"] = self._host
        signed["x-amz-date"] = stamp
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                "POST",
                self._path,
                "",
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = self._signing_key(day, credentials.secret_key)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        out = {**headers, "host": self._host, "X-Amz-Date": stamp}
        if credentials.token:
            out["X-Amz-Security-Token"] = credentials.token
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return out


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class LeanPutEventsClient:
    """`put_events(Entries=...)` over one persistent HTTP(S) connection per calling thread, and
    `put_events_async` over a pool of connections per asyncio loop."""

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
        # `get_frozen_credentials` renews refreshable credentials (ECS task role) in time.
        self._credentials = credentials
        self._ssl = ssl.create_default_context() if self._https else None
        self._local = threading.local()
        # Idle connections of each event loop; a loop's connections die with it.
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[AsyncPostConnection]]
        self._idle = weakref.WeakKeyDictionary()
        self._signer = SigV4Signer(
            service=SERVICE, region=self._region, host=self._host, path=self._path
        )

    def _connection(self) -> PostConnection:
        connection: PostConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = PostConnection(
                self._hostname, self._port, timeout_s=self._timeout_s, tls=self._ssl
            )
            self._local.connection = connection
        return connection

    def signed_headers(self, body: bytes) -> dict[str, str]:
        """The headers of one PutEvents POST of `body`, signed with SigV4."""
        frozen = self._credentials.get_frozen_credentials()
        return self._signer.headers(body, _HEADERS, frozen, now=time.time())

    def put_events(self, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        body = request_body(Entries)
        headers = self.signed_headers(body)
        try:
            response = self._connection().post(self._path, headers, body)
        except TimeoutError as error:
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except OSError as error:  # refused, reset, TLS failures, ProtocolError
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        return _answer(response)

    async def put_events_async(self, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """`put_events` on the running loop: an idle connection of the loop's, or a new one."""
        body = request_body(Entries)
        headers = self.signed_headers(body)
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        connection = idle.pop() if idle else self._async_connection()
        try:
            response = await connection.post(self._path, headers, body)
        except TimeoutError as error:
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except OSError as error:  # refused, reset, TLS failures, ProtocolError
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        if connection.open:
            idle.append(connection)
        return _answer(response)

    def _async_connection(self) -> AsyncPostConnection:
        return AsyncPostConnection(
            self._hostname, self._port, timeout_s=self._timeout_s, tls=self._ssl
        )

    async def aclose(self) -> None:
        """Close the running loop's idle connections (before the loop itself is closed)."""
        for connection in self._idle.pop(asyncio.get_running_loop(), []):
            connection.close()
        await asyncio.sleep(0)  # the transports finish closing on the loop's next turn


def _answer(response: Response) -> dict[str, Any]:
    if response.status == 200:
        parsed: dict[str, Any] = orjson.loads(response.body)
        return parsed
    error_type = response.headers.get("x-amzn-errortype")
    raise _client_error(response.status, response.body, error_type)


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
