"""AWS clients created once per container, on first use, and replaceable by tests.

Every client shares one botocore configuration: standard retry mode with a few attempts, so a
throttled call is retried inside the invocation before the whole event is retried.
"""

import threading
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5)


class Clients:
    """A small cache of boto3 clients by service name."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = boto3.client(service, config=RETRY_CONFIG)  # type: ignore[call-overload]
                self._clients[service] = client
            return client

    def override(self, service: str, client: Any) -> None:
        """Use `client` for `service` from now on (tests hand in their own)."""
        with self._lock:
            self._clients[service] = client
