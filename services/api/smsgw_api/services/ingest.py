"""Accepting sends: validate, normalise, route, store (group commit), publish.

This is the one path every API (native and compatible) uses to accept a message, so the
rules — numbers, senders, permissions, encodings, routing, no loss — live in one place.
"""

from __future__ import annotations

import collections
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from smsgw_api.auth import RateLimiter
from smsgw_api.deps import rate_problem
from smsgw_api.problems import Problem
from smsgw_api.services.pipeline import (
    HANDED_TO_RELAY,
    HOT_PATH_GRACE_S,
    GroupCommitter,
    JobDispatcher,
)
from smsgw_shared.amqp import Outgoing, Topology
from smsgw_shared.config import Settings
from smsgw_shared.ids import uuid7_strings
from smsgw_shared.messages import SendJob
from smsgw_shared.routing import RouteNotAllowedError, Router, UnknownRouteError
from smsgw_shared.sms import charsets
from smsgw_shared.sms.errors import (
    InvalidNumberError,
    InvalidSenderError,
    SmsError,
    TooManyPartsError,
    UnencodableCharactersError,
)
from smsgw_shared.sms.phone import normalize_number, validate_sender
from smsgw_shared.sms.segment import preview
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.messages import NewMessages
from smsgw_shared.urlguard import UrlRefused, check_url

ACCEPTED = Counter("smsgw_api_messages_accepted_total", "Messages accepted", ["route", "status"])
REJECTED = Counter("smsgw_api_recipients_rejected_total", "Recipients refused", ["reason"])

log = logging.getLogger(__name__)


@dataclass
class SendSpec:
    """A send request after parsing, whatever API it came through."""

    recipients: list[str]
    text: str
    sender: str | None = None
    route: str | None = None
    encoding: str = "auto"
    substitute: bool = False
    flash: bool = False
    validity: int | None = None
    send_at: datetime | None = None
    status_callback: str | None = None
    reference: str | None = None
    translit: bool = False
    dlr: bool = True
    max_parts: int | None = None  # per-call override (compat APIs with single-part limits)


@dataclass
class Outcome:
    """One recipient's answer."""

    to: str
    status: str
    parts: int
    encoding: str
    id: str | None = None
    route: str | None = None
    error: str | None = None
    error_code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "to": self.to,
            "status": self.status,
            "parts": self.parts,
            "encoding": self.encoding,
            "route": self.route,
        }
        if self.error:
            out["error"] = self.error
            out["error_code"] = self.error_code
        return out


@dataclass
class Accepted:
    batch_id: str
    messages: list[Outcome] = field(default_factory=list)
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "messages": [m.as_dict() for m in self.messages]}


class JobBodies:
    """The queue body (`SendJob` JSON) of each recipient of one request.

    Everything but four fields is the same for every recipient, so pydantic serialises the
    job once, with markers in those fields, and each body is that text with the values put
    in (ids and E.164 numbers need no escaping; routes are escaped). If a marker does not
    come out exactly once (a text containing one), each job is serialised on its own.
    """

    _FIELDS = ("job_id", "message_id", "to", "route")
    _MARKS = {f: f"\x00smsgw:{f}\x00" for f in _FIELDS}
    _ENCODED = [json.dumps(m)[1:-1] for m in _MARKS.values()]

    def __init__(self, **common: Any) -> None:
        self.common = common
        self._chunks: list[str] | None = None
        self._calls = 0
        self._routes: dict[str, str] = {}

    @classmethod
    def of(cls, group: NewMessages, created_at: datetime) -> JobBodies:
        """The bodies of the jobs of these messages (what they share is the job's)."""
        return cls(
            batch_id=str(group.batch_id),
            sender=group.sender,
            text=group.text,
            encoding=group.encoding,
            parts=group.parts_count,
            flash=group.flash,
            validity=group.validity,
            dlr=group.dlr,
            reference=group.reference,
            created_at=created_at,
        )

    def _template(self) -> list[str] | None:
        text = SendJob(**self._MARKS, **self.common).to_bytes().decode()
        chunks = []
        for encoded in self._ENCODED:
            if text.count(encoded) != 1:
                return None
            head, text = text.split(encoded)
            chunks.append(head)
        chunks.append(text)
        return chunks

    def body(self, job_id: str, message_id: str, to: str, route: str) -> str:
        # The template pays from the second recipient on: one-recipient requests skip it.
        self._calls += 1
        if self._calls == 2:
            self._chunks = self._template()
        c = self._chunks
        if c is None or not _PLAIN_NUMBER.fullmatch(to):
            return (
                SendJob(job_id=job_id, message_id=message_id, to=to, route=route, **self.common)
                .to_bytes()
                .decode()
            )
        escaped = self._routes.get(route)
        if escaped is None:
            escaped = self._routes[route] = json.dumps(route)[1:-1]
        return f"{c[0]}{job_id}{c[1]}{message_id}{c[2]}{to}{c[3]}{escaped}{c[4]}"


_PLAIN_NUMBER = re.compile(r"\+?[0-9]{1,20}")


def number_allowed(key: ApiKey, number: str) -> bool:
    """The key's destination rules (prefix list or regex; none = anything)."""
    if not key.allowed_prefixes and not key.allowed_regex:
        return True
    bare = number.lstrip("+")
    if any(bare.startswith(p.lstrip("+")) for p in key.allowed_prefixes):
        return True
    if key.allowed_regex:
        try:
            rx = re.compile(key.allowed_regex)
        except re.error:  # stored before keys were checked: allows nothing, says why
            log.warning("key %s has an invalid allowed_regex; it may send to no number", key.name)
            return False
        return bool(rx.search(number) or rx.search(bare))
    return False


async def _check_status_callback(url: str | None, allow_private: bool) -> None:
    """The webhook URL guard on a message's `status_callback` (docs/webhooks.md): a
    non-public or malformed target is refused before anything is stored."""
    if url is None:
        return
    try:
        await check_url(url, allow_private, unresolved_ok=True)
    except UrlRefused as exc:
        raise Problem(
            422,
            "status_callback_refused",
            "Status callback URL refused",
            str(exc),
            field="status_callback",
        ) from exc


def _refuse_nul(spec: SendSpec) -> None:
    """A NUL character (U+0000) is no character of an SMS and PostgreSQL stores none in a
    text: refused here with a clear error, before it reaches a group commit (the text
    engine refuses one in `text` as `invalid_text`)."""
    for name, value in (
        ("from", spec.sender),
        ("route", spec.route),
        ("reference", spec.reference),
        ("status_callback", spec.status_callback),
    ):
        if value is not None and "\x00" in value:
            raise Problem(
                422,
                "invalid_characters",
                "Invalid characters",
                f"`{name}` contains a NUL character (U+0000)",
                field=name,
            )


class Ingestor:
    """Turns a `SendSpec` into stored messages and published jobs."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        committer: GroupCommitter,
        dispatcher: JobDispatcher,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.committer = committer
        self.dispatcher = dispatcher
        self.limiter = limiter or RateLimiter()
        self.topology = Topology(settings.namespace, settings.workers.retry_delays)

    def prepare_text(self, spec: SendSpec) -> tuple[str, str, int]:
        """(text to send, encoding, parts) or a 422 problem."""
        text = charsets.transliterate_ru(spec.text) if spec.translit else spec.text
        max_parts = spec.max_parts or self.settings.api.max_parts
        try:
            pv = preview(text, spec.encoding, spec.substitute, max_parts)  # type: ignore[arg-type]
        except TooManyPartsError as exc:
            raise Problem(
                422,
                "too_many_parts",
                "Text too long",
                str(exc),
                parts=exc.parts,
                max_parts=exc.max_parts,
            ) from exc
        except UnencodableCharactersError as exc:
            raise Problem(
                422,
                "unencodable_text",
                "Text does not fit the encoding",
                str(exc),
                characters=list(exc.chars),
            ) from exc
        except SmsError as exc:
            raise Problem(422, "invalid_text", "Invalid text", str(exc)) from exc
        sent_text = text
        if pv.encoding.value == "gsm7" and spec.substitute:
            from smsgw_shared.sms.encoding import choose_encoding

            sent_text = choose_encoding(text, spec.encoding, True).text  # type: ignore[arg-type]
        return sent_text, pv.encoding.value, pv.parts

    def check_sender(self, key: ApiKey, sender: str | None) -> str | None:
        if sender is None:
            return None
        try:
            value = validate_sender(sender, self.settings.api.default_region).value
        except InvalidSenderError as exc:
            raise Problem(422, "invalid_sender", "Invalid sender", str(exc)) from exc
        if (
            key.allowed_senders
            and value not in key.allowed_senders
            and (sender not in key.allowed_senders)
        ):
            raise Problem(
                403,
                "sender_not_allowed",
                "Sender not allowed",
                f"this key may send as: {', '.join(key.allowed_senders)}",
            )
        return value

    async def accept(self, key: ApiKey, spec: SendSpec, batch_id: str | None = None) -> Accepted:
        """Validate and store; the jobs are published right after the commit. `batch_id`:
        the batch's id when the caller chose it (an idempotent request records it first)."""
        if not spec.recipients:
            raise Problem(422, "no_recipients", "No recipients", "`to` is empty")
        _refuse_nul(spec)
        await _check_status_callback(spec.status_callback, self.settings.webhooks.allow_private)
        limit = self.settings.api.max_recipients
        if len(spec.recipients) > limit:
            raise Problem(
                422,
                "too_many_recipients",
                "Too many recipients",
                f"{len(spec.recipients)} recipients, the limit is {limit}",
            )
        if spec.route:
            try:
                self.router.resolve("", spec.route, key.routes)
            except UnknownRouteError as exc:
                raise Problem(422, "unknown_route", "Unknown route", str(exc)) from exc
            except RouteNotAllowedError as exc:
                raise Problem(403, "route_not_allowed", "Route not allowed", str(exc)) from exc
        elif key.routes:
            try:
                self.router.resolve("", None, key.routes)
            except RouteNotAllowedError as exc:
                raise Problem(403, "route_not_allowed", "Route not allowed", str(exc)) from exc
        text, encoding, parts = self.prepare_text(spec)
        sender = self.check_sender(key, spec.sender)
        now = datetime.now(UTC)
        scheduled = spec.send_at is not None and spec.send_at > now + timedelta(seconds=1)
        status = "scheduled" if scheduled else "queued"
        start = spec.send_at if scheduled and spec.send_at is not None else now
        expires_at = start + timedelta(seconds=spec.validity) if spec.validity else None

        ids = iter(uuid7_strings(1 + 2 * len(spec.recipients)))
        batch_id = batch_id or next(ids)
        result = Accepted(batch_id, text=text)
        group = NewMessages(
            batch_id=batch_id,
            api_key_id=key.id,
            sender=sender,
            text=text,
            encoding=encoding,
            parts_count=parts,
            status=status,
            flash=spec.flash,
            dlr=spec.dlr,
            validity=spec.validity,
            reference=spec.reference,
            status_callback=spec.status_callback,
            send_at=spec.send_at if scheduled else None,
            expires_at=expires_at,
            exchange=None if scheduled else self.topology.jobs_exchange,
        )
        outgoing: list[Outgoing] = []
        seen: set[str] = set()
        bodies = JobBodies.of(group, created_at=now)
        for raw in spec.recipients:
            outcome = self._recipient(key, raw, spec, seen, encoding, parts)
            result.messages.append(outcome)
            if outcome.status == "rejected":
                continue
            mid = next(ids)
            job_id = next(ids)
            outcome.id = mid
            outcome.status = status
            route = outcome.route or ""
            if scheduled:
                group.add(mid, outcome.to, route, job_id)
                continue
            body = bodies.body(job_id, mid, outcome.to, route)
            routing_key = self.topology.job_routing_key(route)
            group.add(mid, outcome.to, route, job_id, routing_key)
            outgoing.append(
                Outgoing(
                    self.topology.jobs_exchange,
                    routing_key,
                    body.encode(),
                    message_id=job_id,
                )
            )
        if not group.ids:
            raise Problem(
                422,
                "no_valid_recipients",
                "No valid recipients",
                "; ".join(f"{m.to}: {m.error}" for m in result.messages)[:1000],
                errors=[
                    {"to": m.to, "error": m.error, "code": m.error_code} for m in result.messages
                ],
            )
        self._charge(key, len(group.ids))
        await self._store(group, outgoing)
        if log.isEnabledFor(logging.DEBUG):  # per message: DEBUG, off the hot path at INFO
            for m in result.messages:
                if m.id is not None:
                    log.debug(
                        "accepted",
                        extra={
                            "message_id": m.id,
                            "batch_id": batch_id,
                            "route": m.route,
                            "status": m.status,
                        },
                    )
        counts = collections.Counter((m.route or "none", m.status) for m in result.messages)
        for (route, state), n in counts.items():
            ACCEPTED.labels(route, state).inc(n)
        return result

    def _charge(self, key: ApiKey, recipients: int) -> None:
        """The key's rate is in recipients a second, on every path that sends (REST,
        compat, WebSockets): 429 when it is in debt, else the recipients are taken."""
        rate = key.rate_limit or self.settings.api.rate_limit_default
        wait = self.limiter.check(str(key.id), rate, recipients)
        if wait > 0:
            raise rate_problem(rate, wait)

    async def _store(self, group: NewMessages, outgoing: list[Outgoing]) -> None:
        """Commit; the jobs go to the dispatcher, or to the relay when the dispatcher has
        had no room for a while (the broker stalled): then they are due at once."""
        jobs = group.jobs
        hot = bool(jobs) and await self.dispatcher.reserve(jobs)
        group.available_at = datetime.now(UTC) + timedelta(seconds=HOT_PATH_GRACE_S if hot else 0)
        try:
            outbox_ids = await self.committer.submit(group)
        except BaseException:
            if hot:
                self.dispatcher.release(jobs)
            raise
        if hot:
            self.dispatcher.enqueue(list(zip(outbox_ids, outgoing, strict=True)))
        elif jobs:
            HANDED_TO_RELAY.inc(jobs)

    def _recipient(
        self, key: ApiKey, raw: str, spec: SendSpec, seen: set[str], encoding: str, parts: int
    ) -> Outcome:
        try:
            number = normalize_number(raw, self.settings.api.default_region)
        except InvalidNumberError as exc:
            REJECTED.labels("invalid_number").inc()
            return Outcome(
                raw, "rejected", parts, encoding, error=str(exc), error_code="invalid_number"
            )
        if number in seen:
            REJECTED.labels("duplicate").inc()
            return Outcome(
                number,
                "rejected",
                parts,
                encoding,
                error="duplicate recipient in this request",
                error_code="duplicate_recipient",
            )
        seen.add(number)
        if not number_allowed(key, number):
            REJECTED.labels("forbidden_number").inc()
            return Outcome(
                number,
                "rejected",
                parts,
                encoding,
                error="this key may not send to this number",
                error_code="number_not_allowed",
            )
        route = self.router.resolve(number, spec.route, key.routes)
        return Outcome(number, "queued", parts, encoding, route=route)
