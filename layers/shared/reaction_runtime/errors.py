"""Errors the functions raise on purpose. Each one makes Lambda retry, then dead-letter."""

from change_contract import ContractError

__all__ = ["ContractError", "DownstreamError"]


class DownstreamError(RuntimeError):
    """SNS, DynamoDB or MongoDB refused or failed a call; raised so the platform retries."""
