"""Request and response bodies of the native API (v1)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

from smsgw_shared.config import check_route

Scope = Literal["send", "read", "admin", "modems", "webhooks"]
DEFAULT_SCOPES: tuple[Scope, ...] = ("send", "read")


class SendRequest(BaseModel):
    """`POST /v1/messages`."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"to": "+79160001234", "text": "Hello from smsgw"},
                {
                    "to": ["89203048606", "+79160001235"],
                    "text": "Привет!",
                    "from": "MyShop",
                    "route": "modem:*",
                    "reference": "order-42",
                    "status_callback": "https://example.com/sms/status",
                },
            ]
        },
    )

    to: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] = Field(
        description="One recipient or a list (E.164, or national format of the default region)"
    )
    text: StrictStr = Field(min_length=1, max_length=10_000)
    from_: StrictStr | None = Field(
        None, alias="from", description="Sender: alphanumeric (≤ 11) or a number"
    )
    route: StrictStr | None = Field(
        None, description="modem:<id>, smpp:<id>, modem:*, smpp:*, pool:<name>"
    )
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"
    substitute: StrictBool = Field(
        False, description="Replace typographic characters (curly quotes, dashes…) to stay GSM-7"
    )
    flash: StrictBool = False
    validity: int | None = Field(None, ge=60, le=7 * 86400, description="Seconds")
    send_at: datetime | None = Field(None, description="RFC 3339; in the future: scheduled")
    status_callback: AnyHttpUrl | None = None
    reference: StrictStr | None = Field(None, max_length=128)
    translit: StrictBool = Field(False, description="Transliterate Russian text to Latin")
    dlr: StrictBool = Field(True, description="Request delivery reports")

    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


class AcceptedMessage(BaseModel):
    id: str | None
    to: str
    status: str
    parts: int
    encoding: str
    route: str | None = None
    error: str | None = None
    error_code: str | None = None


class SendResponse(BaseModel):
    batch_id: str
    messages: list[AcceptedMessage]


Time = Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]


class HistoryEntry(BaseModel):
    """One line of a message's history, in the order things happened."""

    model_config = ConfigDict(extra="forbid")

    state: str
    part: int | None = Field(description="The part it concerns; null: the whole message")
    source: str = Field(description="api, scheduler, the route that reported it, projection…")
    error_code: str | None
    detail: str | None
    at: Time = Field(
        description="When it happened (RFC 3339): never before the submission it reports on; "
        "the history is in this order"
    )
    reported_at: Time = Field(
        description="The time the report itself gave (an SMSC receipt's minute-resolution "
        "`done date`), which may be before `at`; null when the line had no report "
        "(queued, canceled, a derived state) or was recorded before this was kept"
    )


class PartDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    status: str
    route: str | None
    provider_id: str | None
    error_code: str | None
    submitted_at: Time
    updated_at: Time


class MessageSummary(BaseModel):
    """A message as `GET /v1/messages` lists it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    batch_id: str
    to: str
    from_: str | None = Field(alias="from")
    text: str
    status: str
    encoding: str
    parts: int
    route: str
    reference: str | None
    error_code: str | None
    error: str | None
    flash: bool
    validity: int | None
    send_at: Time
    created_at: Time
    updated_at: Time
    sent_at: Time
    done_at: Time


class MessageDetail(MessageSummary):
    """`GET /v1/messages/{id}`: the summary with its parts and history."""

    parts_detail: list[PartDetail]
    history: list[HistoryEntry]


class MessageList(BaseModel):
    """`GET /v1/messages`: a page, newest first; `next_cursor` fetches the next one."""

    model_config = ConfigDict(extra="forbid")

    data: list[MessageSummary]
    next_cursor: str | None


class PreviewRequest(BaseModel):
    """`POST /v1/messages/preview`: segment count without sending."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Ваш код: 1234", "encoding": "auto"}]},
    )

    text: StrictStr = Field(min_length=1, max_length=10_000)
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"
    substitute: StrictBool = False
    translit: StrictBool = False


class PreviewResponse(BaseModel):
    encoding: str
    parts: int
    units: int
    units_per_part: int
    remaining: int
    ucs2_chars: list[str]
    text: str


class KeyCreate(BaseModel):
    """`POST /v1/keys`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "shop",
                    "scopes": ["send", "read"],
                    "allowed_prefixes": ["+7916"],
                    "allowed_senders": ["MyShop"],
                    "rate_limit": 10,
                }
            ]
        },
    )

    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:-]+$")
    secret: StrictStr | None = Field(
        None,
        min_length=6,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="Set the secret yourself (to keep a seed client's token); default: random",
    )
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)
    allowed_prefixes: list[StrictStr] = Field(default_factory=list, max_length=1000)
    allowed_regex: StrictStr | None = Field(None, max_length=1000)
    allowed_senders: list[StrictStr] = Field(default_factory=list, max_length=1000)
    rate_limit: float | None = Field(
        None,
        ge=0,
        le=100_000,
        description="Recipients/s for sends, calls/s otherwise; 0 = unlimited; "
        "default: the server's `api.new_key_rate_limit` (100)",
    )
    routes: list[Annotated[StrictStr, Field(max_length=80)]] = Field(
        default_factory=list,
        max_length=100,
        description="Route-limited key: sends only through these routes (`modem:m2`, "
        "`smpp:b1`, `pool:name`, `modem:*`) and sees only its own messages and the incoming "
        "SMS and events of these routes; empty: every route",
    )

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: list[str]) -> list[str]:
        for r in v:
            check_route(r)
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _no_limited_admin(self) -> KeyCreate:
        if self.routes and "admin" in self.scopes:
            raise ValueError(
                "a route-limited key cannot have the admin scope (admin reaches every route)"
            )
        return self

    def create_args(self, default_rate: float = 0.0) -> dict[str, Any]:
        """The arguments of `KeyRepository.create` for this key."""
        return {
            "routes": self.routes,
            "name": self.name,
            "scopes": list(self.scopes),
            "secret": self.secret,
            "allowed_prefixes": self.allowed_prefixes,
            "allowed_regex": self.allowed_regex,
            "allowed_senders": self.allowed_senders,
            "rate_limit": default_rate if self.rate_limit is None else self.rate_limit,
        }

    def regex_error(self) -> str | None:
        """Why `allowed_regex` does not compile, or None (checked apart from the model so
        the API answers it with its own problem code, `invalid_regex`)."""
        if self.allowed_regex is None:
            return None
        try:
            re.compile(self.allowed_regex)
        except re.error as exc:
            return str(exc)
        return None


class UssdRequest(BaseModel):
    """`POST /v1/modems/{id}/ussd`: a USSD code sent by that modem, and its answer."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "*100#", "timeout": 20}]}
    )

    code: StrictStr = Field(min_length=1, max_length=160, pattern=r"^[0-9*#+]+$")
    timeout: float = Field(30, gt=0, le=120)
