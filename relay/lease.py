"""Leader lease: at most one relay per RELAY_ID streams; a standby takes over when the leader dies.

The lease is an item in the checkpoint table (`relayId` = "<RELAY_ID>#lease") holding the owner,
an expiry (epoch seconds) and a fencing token that grows by one with every new owner. Every
checkpoint write carries the token, so a deposed leader cannot overwrite its successor's position.
Expiry uses wall clocks: tasks' clocks must agree to well within the lease time (NTP on Fargate).
"""

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.telemetry import Ticker, logger


class LeaseError(RuntimeError):
    """The lease table could not be reached."""


class Lease:
    def __init__(self, client: Any, table: str, relay_id: str, lease_seconds: float) -> None:
        self._client = client
        self._table = table
        self._key = {"relayId": {"S": f"{relay_id}#lease"}}
        self.lease_seconds = lease_seconds
        self.owner = f"{uuid.uuid4()}"
        self.fencing_token = 0

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired. True when we hold it now."""
        now = time.time()
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=(
                    "SET #owner = :me, expiresAt = :expires, acquiredAt = :now "
                    "ADD fencingToken :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#owner) OR expiresAt < :now OR #owner = :me"
                ),
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":expires": {"N": f"{now + self.lease_seconds:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise LeaseError(f"cannot reach the lease in {self._table}: {error}") from error
        except BotoCoreError as error:
            raise LeaseError(f"cannot reach the lease in {self._table}: {error}") from error
        self.fencing_token = int(response["Attributes"]["fencingToken"]["N"])
        logger.info("lease acquired", owner=self.owner, fencing_token=self.fencing_token)
        return True

    def renew(self) -> bool:
        """Extend our lease. False when another task holds it now (we were deposed)."""
        now = time.time()
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET expiresAt = :expires",
                ConditionExpression="#owner = :me AND fencingToken = :fence",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":fence": {"N": str(self.fencing_token)},
                    ":expires": {"N": f"{now + self.lease_seconds:.3f}"},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise LeaseError(f"cannot renew the lease in {self._table}: {error}") from error
        except BotoCoreError as error:
            raise LeaseError(f"cannot renew the lease in {self._table}: {error}") from error
        return True

    def release(self) -> None:
        """Give the lease up at a clean stop, so a standby takes over at once."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET expiresAt = :zero",
                ConditionExpression="#owner = :me AND fencingToken = :fence",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":fence": {"N": str(self.fencing_token)},
                    ":zero": {"N": "0"},
                },
            )
        except (ClientError, BotoCoreError) as error:
            # Not fatal: the lease simply expires after LEASE_SECONDS.
            logger.warning("lease release failed", error=str(error))
            return
        logger.info("lease released", owner=self.owner, fencing_token=self.fencing_token)

    def describe(self) -> dict[str, Any]:
        """The lease item as stored (for `status`)."""
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key).get("Item") or {}
        except (ClientError, BotoCoreError) as error:
            raise LeaseError(f"cannot read the lease in {self._table}: {error}") from error
        if not item:
            return {}
        return {
            "owner": item.get("owner", {}).get("S"),
            "expiresAt": float(item.get("expiresAt", {}).get("N", "0")),
            "fencingToken": int(item.get("fencingToken", {}).get("N", "0")),
        }


class LeaseKeeper:
    """Holds a `Lease` for one process: waits as standby until it is free, renews it on its own
    thread every third of the lease time, and calls `on_lost` once if it is lost.

    The relay keeps one for its whole run; the backfill's start-up mode takes one before it reads
    and hands it, still held, to the relay it starts. The one who acquired it releases it.
    """

    def __init__(
        self,
        lease: Lease,
        *,
        stop: threading.Event,
        on_lost: Callable[[], None],
        on_waiting: Callable[[], None] = lambda: None,
    ) -> None:
        self.lease = lease
        self.lost = threading.Event()
        self._stop = stop
        self._on_lost = on_lost
        self._on_waiting = on_waiting
        self._renewed_at = 0.0
        self._renewer: Ticker | None = None
        self._held = False

    @property
    def fencing_token(self) -> int:
        return self.lease.fencing_token

    def acquire(self, relay_id: str) -> bool:
        """Wait as standby until the lease is ours (True, renewing from now) or `stop` is set."""
        logger.info("waiting for the lease", relay_id=relay_id)
        period = self.lease.lease_seconds / 3
        while not self._stop.is_set():
            try:
                if self.lease.try_acquire():
                    self._held = True
                    self._renewed_at = time.monotonic()
                    self._renewer = Ticker("lease", period, self._renew)
                    self._renewer.start()
                    return True
            except LeaseError as error:
                logger.warning("lease check failed", error=str(error))
            self._on_waiting()
            self._stop.wait(period)
        return False

    def _renew(self) -> None:
        if self.lost.is_set():
            return
        try:
            if self.lease.renew():
                self._renewed_at = time.monotonic()
                return
            logger.error("lease lost to another relay, stopping", owner=self.lease.owner)
        except LeaseError as error:
            held_for = time.monotonic() - self._renewed_at
            if held_for < self.lease.lease_seconds * 0.8:
                logger.warning("lease renewal failed, will retry", error=str(error))
                return
            logger.error("lease could not be renewed before expiry, stopping", error=str(error))
        self.lost.set()
        self._on_lost()

    def release(self) -> None:
        """Stop renewing and, unless it was lost, give the lease up so a standby takes over."""
        if self._renewer is not None:
            self._renewer.stop(final_run=False)
            self._renewer = None
        if self._held and not self.lost.is_set():
            self.lease.release()
        self._held = False
