"""Settings of the stock alert, read once from the environment at cold start."""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, cast

from reaction_runtime import ConfigError, env_bool, env_enum, env_int, env_optional, env_str

Language = Literal["es", "en"]
Mode = Literal["episode", "every"]


@dataclass(frozen=True, slots=True)
class StockAlertSettings:
    """What the stock alert watches, when it pages, and in which language."""

    topic_arn: str
    state_table: str | None = None
    collection: str = "productos"
    quantity_field: str = "cantidad"
    name_field: str = "nombreProducto"
    threshold: Decimal = Decimal(10)
    threshold_field: str | None = None
    language: Language = "es"
    mode: Mode = "episode"
    alert_on_replay: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "StockAlertSettings":
        mode = cast(Mode, env_enum("ALERT_MODE", ("episode", "every"), "episode", environ=environ))
        language = cast(Language, env_enum("ALERT_LANGUAGE", ("es", "en"), "es", environ=environ))
        state_table = env_optional("ALERT_STATE_TABLE", environ=environ)
        if mode == "episode" and state_table is None:
            # Without pre-images the episode is only known from the stored state.
            raise ConfigError("ALERT_STATE_TABLE", "is required when ALERT_MODE is episode")
        return cls(
            topic_arn=env_str("ALERT_TOPIC_ARN", environ=environ),
            state_table=state_table,
            collection=env_str("PRODUCTS_COLLECTION", "productos", environ=environ),
            quantity_field=env_str("QUANTITY_FIELD", "cantidad", environ=environ),
            name_field=env_str("NAME_FIELD", "nombreProducto", environ=environ),
            threshold=Decimal(env_int("LOW_STOCK_THRESHOLD", 10, minimum=0, environ=environ)),
            threshold_field=env_optional("THRESHOLD_FIELD", environ=environ),
            language=language,
            mode=mode,
            alert_on_replay=env_bool("ALERT_ON_REPLAY", False, environ=environ),
        )
