"""The one error type the contract raises, so callers catch one thing and read one message."""


class ContractError(ValueError):
    """An input is not a change event this contract can encode or decode.

    The message names what was wrong; `event_id` is set when the input had a usable id.
    """

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        self.reason = reason
        self.event_id = event_id
        prefix = f"change event {event_id}: " if event_id else "change event: "
        super().__init__(prefix + reason)


class EntryTooLargeError(ContractError):
    """A PutEvents entry is larger than the request limit even on its own."""

    def __init__(self, size: int, limit: int, *, event_id: str | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"entry is {size} bytes, over the limit of {limit}", event_id=event_id)
