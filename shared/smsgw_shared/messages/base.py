"""Envelope shared by every queue payload: a version, a type tag and an id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smsgw_shared.ids import uuid7_strings


def utcnow() -> datetime:
    """Aware UTC now; every timestamp on the wire is aware."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh id (a time-ordered UUID, version 7, as text): event ids are unique keys of
    the store, which grow at their right edge with such ids."""
    return uuid7_strings(1)[0]


class PayloadError(ValueError):
    """A queue body that is not valid JSON for the expected payload type."""


class Payload(BaseModel):
    """Base of every queue payload: JSON on the wire, never pickle.

    `v` is the schema version; a consumer refuses versions it does not know instead of
    guessing. Unknown fields are ignored so a newer producer can add optional fields.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    VERSION: ClassVar[int] = 1

    v: int = 1

    def to_bytes(self) -> bytes:
        """Serialise to UTF-8 JSON."""
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes | str) -> Self:
        """Parse a queue body, raising `PayloadError` with a readable reason."""
        try:
            obj = cls.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "<body>"
            raise PayloadError(f"{cls.__name__}: {loc}: {first['msg']}") from exc
        if obj.v > cls.VERSION:
            raise PayloadError(f"{cls.__name__}: unsupported version {obj.v} > {cls.VERSION}")
        return obj

    def log_fields(self) -> dict[str, Any]:
        """Fields worth putting in a log line (ids, never message text)."""
        return {}


Timestamp = Field(default_factory=utcnow)
