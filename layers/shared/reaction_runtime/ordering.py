"""Ordering and replay facts about a change, shared by every function that must not act twice.

EventBridge keeps no order, so a function that remembers state compares cluster times before it
acts; replays from the archive carry `replay-name` and are told apart from first deliveries.
"""

from change_contract import ChangeEvent, ClusterTime

# A MongoDB Timestamp's increment is an unsigned 32-bit number.
_INCREMENT_BITS = 32


def cluster_time_number(cluster_time: ClusterTime) -> int:
    """The cluster time as one integer with the same order (for DynamoDB numeric conditions)."""
    return (cluster_time.t << _INCREMENT_BITS) | cluster_time.i


def cluster_time_text(cluster_time: ClusterTime) -> str:
    """The cluster time as fixed-width text with the same order (for string sort keys)."""
    return f"{cluster_time.t:010d}.{cluster_time.i:010d}"


def replay_name(event: ChangeEvent) -> str | None:
    """The archive replay that re-delivered this event, or None for a first delivery."""
    return event.replay_name
