"""The PostgreSQL schema (SQLAlchemy Core). Alembic migrations are generated from it.

One row per recipient in `messages`; parts and the state history hang off it. All SQL lives
in the repository modules next to this one.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True, default_now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if default_now else None,
    )


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False, unique=True),
    Column("secret_prefix", String(12), nullable=False),
    Column("scopes", ARRAY(String(16)), nullable=False),
    Column("allowed_prefixes", ARRAY(String(32)), nullable=False, server_default="{}"),
    Column("allowed_regex", Text, nullable=True),
    Column("allowed_senders", ARRAY(String(32)), nullable=False, server_default="{}"),
    Column("rate_limit", Float, nullable=False, server_default="0"),
    # Routes the key may send through and see; empty: every route (migration 0005).
    Column("routes", ARRAY(String(80)), nullable=False, server_default="{}"),
    _ts("created_at", False, True),
    _ts("revoked_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("batch_id", Uuid, nullable=False),
    Column("api_key_id", Uuid, nullable=True),
    Column("to_number", String(32), nullable=False),
    Column("sender", String(32), nullable=True),
    Column("text", Text, nullable=False),
    Column("encoding", String(8), nullable=False),
    Column("parts_count", SmallInteger, nullable=False),
    Column("route", String(80), nullable=False),
    Column("status", String(24), nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("flash", Boolean, nullable=False, server_default="false"),
    Column("dlr", Boolean, nullable=False, server_default="true"),
    Column("validity", Integer, nullable=True),
    Column("reference", String(128), nullable=True),
    Column("status_callback", Text, nullable=True),
    Column("job_id", Uuid, nullable=False),
    _ts("send_at"),
    _ts("expires_at"),
    _ts("created_at", False, True),
    _ts("updated_at", False, True),
    _ts("sent_at"),
    _ts("done_at"),
    Index("ix_messages_created", "created_at", "id"),
    Index("ix_messages_batch", "batch_id"),
    Index("ix_messages_status", "status"),
    Index("ix_messages_to", "to_number"),
    # Most sends carry no reference, and every send has no expiry until it asks for one:
    # those rows stay out of these indexes (less to write a message; migration 0004).
    Index("ix_messages_reference", "reference", postgresql_where=text("reference IS NOT NULL")),
    Index(
        "ix_messages_due",
        "send_at",
        postgresql_where=text("status = 'scheduled'"),
    ),
    Index(
        "ix_messages_expiry",
        "expires_at",
        postgresql_where=text("status IN ('queued','sending','sent') AND expires_at IS NOT NULL"),
    ),
)

message_parts = Table(
    "message_parts",
    metadata,
    # No foreign key (migration 0010): retention deletes a message's parts with it.
    Column("message_id", Uuid, nullable=False),
    Column("idx", SmallInteger, nullable=False),
    Column("route", String(80), nullable=False),
    Column("provider_id", String(80), nullable=True),
    Column("recipient", String(32), nullable=True),
    Column("status", String(24), nullable=False),
    Column("error_code", String(64), nullable=True),
    _ts("submitted_at"),
    _ts("updated_at", False, True),
    PrimaryKeyConstraint("message_id", "idx"),
    Index("ix_parts_provider", "route", "provider_id"),
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # No foreign key (migration 0010): retention deletes a message's history with it.
    Column("message_id", Uuid, nullable=False),
    Column("state", String(24), nullable=False),
    Column("part", SmallInteger, nullable=True),
    Column("source", String(80), nullable=False),
    Column("source_event_id", String(64), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    _ts("occurred_at", False, True),
    _ts("recorded_at", False, True),
    _ts("reported_at"),  # the time the report gave (a receipt's done date); migration 0009
    Index("ix_message_events_message", "message_id", "id"),
    UniqueConstraint("source_event_id", "message_id", "part", name="uq_message_events_source"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", Uuid, nullable=True),
    Column("exchange", String(128), nullable=False),
    Column("routing_key", String(128), nullable=False),
    # NULL: the send job of `message_id`, made from its stored row when the relay needs it
    # (the accept path writes no body: the hot path publishes what it built in memory).
    Column("body", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    _ts("available_at", False, True),
    _ts("created_at", False, True),
    Index("ix_outbox_available", "available_at", "id"),
)

pending_reports = Table(
    "pending_reports",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("route", String(80), nullable=False),
    Column("provider_id", String(80), nullable=False),
    Column("recipient", String(32), nullable=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("body", JSONB, nullable=False),
    _ts("received_at", False, True),
    Index("ix_pending_reports_key", "route", "provider_id"),
    Index("ix_pending_reports_received", "received_at"),  # retention (migration 0007)
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("route", String(80), nullable=False),
    # Numbers as the SMSC or modem sent them, whatever their length (migration 0006).
    Column("sender", Text, nullable=False),
    Column("recipient", Text, nullable=True),
    Column("text", Text, nullable=False),
    # The original text in hex when characters PostgreSQL cannot hold were replaced.
    Column("raw_hex", Text, nullable=True),
    Column("encoding", String(16), nullable=False),  # iso8859-5 is 9 (migration 0008)
    Column("parts_total", SmallInteger, nullable=False, server_default="1"),
    Column("parts_received", SmallInteger, nullable=False, server_default="1"),
    Column("complete", Boolean, nullable=False, server_default="true"),
    _ts("received_at", False, True),
    _ts("created_at", False, True),
    Index("ix_inbound_created", "created_at", "id"),
    # Hash: a btree entry holds at most 2704 bytes, a sender may be longer.
    Index("ix_inbound_sender", "sender", postgresql_using="hash"),
)

inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("route", String(80), nullable=False),
    Column("sender", Text, nullable=False),
    Column("recipient", Text, nullable=True),
    Column("ref", Integer, nullable=False),
    Column("ref_bits", SmallInteger, nullable=False),
    Column("total", SmallInteger, nullable=False),
    Column("seq", SmallInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("raw_hex", Text, nullable=True),
    Column("encoding", String(16), nullable=False),
    Column("event_id", String(64), nullable=False, unique=True),
    _ts("received_at", False, True),
    # Set once assembled; assembled parts are kept a while to recognise late duplicates.
    Column("message_id", Uuid, nullable=True),
    Index("ix_inbound_parts_open", "received_at", postgresql_where=text("message_id IS NULL")),
    Index("ix_inbound_parts_message", "message_id"),
    # Parts of assembled messages by age: what retention deletes (migration 0007).
    Index(
        "ix_inbound_parts_assembled",
        "received_at",
        postgresql_where=text("message_id IS NOT NULL"),
    ),
)
# One open slot per part of a long message; the numbers by their md5, since a btree entry
# holds at most 2704 bytes and an SMSC may send longer addresses.
Index(
    "uq_inbound_parts_open_slot",
    inbound_parts.c.route,
    func.md5(inbound_parts.c.sender),
    func.md5(inbound_parts.c.recipient),
    inbound_parts.c.ref_bits,
    inbound_parts.c.ref,
    inbound_parts.c.total,
    inbound_parts.c.seq,
    unique=True,
    postgresql_where=text("message_id IS NULL"),
    postgresql_nulls_not_distinct=True,
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("api_key_id", Uuid, nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", SmallInteger, nullable=True),
    Column("response", JSONB, nullable=True),
    _ts("created_at", False, True),
    _ts("expires_at", False),
    PrimaryKeyConstraint("api_key_id", "key"),
    Index("ix_idempotency_expires", "expires_at"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("api_key_id", Uuid, nullable=True),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(String(64)), nullable=False),
    Column("routes", ARRAY(String(80)), nullable=False, server_default="{}"),
    Column("numbers", ARRAY(String(32)), nullable=False, server_default="{}"),
    Column("secrets", ARRAY(String(128)), nullable=False),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("description", Text, nullable=True),
    _ts("created_at", False, True),
    _ts("secrets_rotated_at"),  # the previous secret stays valid 24 h after a rotation
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("webhook_id", Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=True),
    Column("url", Text, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, succeeded, dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_status_code", SmallInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    _ts("next_attempt_at", False, True),
    _ts("created_at", False, True),
    _ts("updated_at", False, True),
    UniqueConstraint("webhook_id", "event_id", "url", name="uq_webhook_deliveries_event"),
    Index("ix_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    # Claims go per URL (skip scan over the URLs, then each one's oldest due rows).
    Index(
        "ix_deliveries_url_due",
        "url",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_deliveries_webhook", "webhook_id", "created_at"),
    # Finished deliveries by age: what retention deletes (migration 0007).
    Index("ix_deliveries_created", "created_at", postgresql_where=text("status <> 'pending'")),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        Uuid,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("status_code", SmallInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    _ts("attempted_at", False, True),
    Index("ix_attempts_delivery", "delivery_id", "id"),
)

# The log of everything clients may stream (SSE resume by id, WebSocket, webhooks source).
event_log = Table(
    "event_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("route", String(80), nullable=True),
    Column("message_id", Uuid, nullable=True),
    Column("api_key_id", Uuid, nullable=True),
    Column("payload", JSONB, nullable=False),
    _ts("created_at", False, True),
    # No index on message_id: nothing reads the log by message (migration 0011).
    Index("ix_event_log_created", "created_at"),
)

route_state = Table(
    "route_state",
    metadata,
    Column("route", String(80), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("state", String(24), nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("signal_dbm", Integer, nullable=True),
    Column("operator", String(64), nullable=True),
    Column("queue_depth", Integer, nullable=True),
    Column("in_flight", Integer, nullable=False, server_default="0"),
    Column("details", JSONB, nullable=False, server_default="{}"),
    _ts("last_seen", False, True),
)
