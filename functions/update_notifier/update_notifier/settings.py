"""Settings of the update notifier, read once from the environment at cold start."""

from collections.abc import Mapping
from dataclasses import dataclass

from reaction_runtime import env_bool, env_str


@dataclass(frozen=True, slots=True)
class UpdateNotifierSettings:
    topic_arn: str
    notify_on_replace: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "UpdateNotifierSettings":
        return cls(
            topic_arn=env_str("CHANGES_TOPIC_ARN", environ=environ),
            notify_on_replace=env_bool("NOTIFY_ON_REPLACE", False, environ=environ),
        )
