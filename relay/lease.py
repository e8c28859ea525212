"""Leader lease: at most one relay per RELAY_ID streams; a standby takes over when the leader dies.

The lease is an item in the checkpoint table (`relayId` = "<RELAY_ID>#lease") holding the owner,
an expiry (epoch seconds) and a fencing token that grows by one with every new owner. Every
checkpoint write carries the token, so a deposed leader cannot overwrite its successor's position.
Expiry uses wall clocks: tasks' clocks must agree to well within the lease time (NTP on Fargate).
"""

import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.telemetry import logger


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
