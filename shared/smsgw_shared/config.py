"""Settings: one pydantic-settings model read from the TOML file named by SMSGW_CONFIG and
SMSGW_* environment variables (the environment wins).

`load_settings()` is the only entry point; it raises `ConfigError` with the file, the key
and what is wrong, so the command line can print one readable line instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ROUTE_RE = re.compile(r"^(modem|smpp):([A-Za-z0-9_.-]+|\*)$|^pool:[A-Za-z0-9_.-]+$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScriptStep(_Section):
    """One step of a modem login/init/balance script: send, then wait for `expect`."""

    send: str
    expect: str = "OK"
    timeout: float = 10.0
    raw: bool = False  # send without appending CR (e.g. a telnet login name)


class ModemConfig(_Section):
    """One GSM modem, on a serial device or a network port (`socket://host:port`)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    url: str
    baudrate: int = Field(115200, gt=0)
    pin: str = ""
    balance_ussd: str = "*100#"
    ussd_encoding: Literal["text", "gsm7-hex"] = "text"  # Huawei wants packed GSM-7 hex
    balance_script: list[ScriptStep] = Field(default_factory=list)
    login_script: list[ScriptStep] = Field(default_factory=list)
    init_commands: list[str] = Field(default_factory=list)
    command_timeout: float = Field(10.0, gt=0)
    send_timeout: float = Field(60.0, gt=0)
    send_pause: float = Field(0.0, ge=0)
    reset_command: str = "AT+CFUN=1,1"
    sweep_interval: float = Field(60.0, gt=0)
    registration_timeout: float = Field(60.0, gt=0)
    delivery_reports: bool = True
    alphanumeric_sender: bool = True
    pools: list[str] = Field(default_factory=list)
    storage: str = "SM"  # AT+CPMS memory for received messages and status reports
    max_timeouts: int = Field(3, ge=1)  # consecutive command timeouts before a reset
    reconnect_max: float = Field(30.0, gt=0)  # backoff ceiling while the port cannot open


class SmppBindConfig(_Section):
    """One SMPP 3.4 bind to an SMSC."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    host: str = "127.0.0.1"
    port: int = Field(2775, gt=0, lt=65536)
    system_id: str = "smsgw"
    # Binds of one SMSC account share receipts (the SMSC may send one on any of them):
    # binds naming the same account, or naming none with the same host, port and
    # system_id, are matched as one (`smsgw_shared.report_scope`).
    account: str = Field("", max_length=80)
    password: str = "secret"
    system_type: str = ""
    mode: Literal["transceiver", "transmitter_receiver"] = "transceiver"
    tps: float = Field(0, ge=0)
    window: int = Field(64, ge=1, le=10000)
    address_range: str = ""
    source_ton: int = 5
    source_npi: int = 0
    dest_ton: int = 1
    dest_npi: int = 1
    default_source: str = ""
    data_coding: Literal[0, 3, 8] = 0
    split: Literal["udh", "sar", "payload"] = "udh"
    tls: bool = False
    enquire_link_interval: float = Field(30.0, gt=0)
    response_timeout: float = Field(10.0, gt=0)
    # Seconds a deliver_sm_resp (receipt, incoming SMS) waits for the broker to confirm the
    # event before answering ESME_RX_T_APPN: a brief broker outage does not leave the
    # message to the SMSC's retry policy. Keep it well inside the SMSC's response timeout.
    event_hold: float = Field(20.0, ge=0, le=300)
    reconnect_min: float = Field(1.0, gt=0)
    reconnect_max: float = Field(60.0, gt=0)
    id_format: Literal["auto", "hex", "decimal", "string"] = "auto"
    pools: list[str] = Field(default_factory=list)
    # How the `id:` of text receipts is written when it differs from submit_sm_resp ids
    # (e.g. decimal receipts for hex ids); "same" = like id_format.
    receipt_id_format: Literal["same", "hex", "decimal", "string"] = "same"
    service_type: str = ""  # submit_sm service_type (SMPP 3.4 §5.2.11)
    tls_verify: bool = True  # verify the SMSC's TLS certificate


class SmppConfig(_Section):
    binds: list[SmppBindConfig] = Field(default_factory=list)


class RoutingRule(_Section):
    """First matching rule wins: `prefix` on the E.164 number or a `regex`."""

    prefix: str | None = None
    regex: str | None = None
    to: str

    @model_validator(mode="after")
    def _one_matcher(self) -> RoutingRule:
        if (self.prefix is None) == (self.regex is None):
            raise ValueError("a rule needs exactly one of 'prefix' or 'regex'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from exc
        return self

    @field_validator("to")
    @classmethod
    def _route(cls, v: str) -> str:
        return check_route(v)


class RoutingConfig(_Section):
    default: str = "modem:*"
    rules: list[RoutingRule] = Field(default_factory=list)

    @field_validator("default")
    @classmethod
    def _route(cls, v: str) -> str:
        return check_route(v)


def check_route(v: str) -> str:
    """Validate a route name: `modem:<id>`, `smpp:<id>`, `modem:*`, `smpp:*`, `pool:<name>`."""
    if not ROUTE_RE.match(v):
        raise ValueError(f"invalid route {v!r}: use modem:<id>, smpp:<id>, modem:*, smpp:*")
    return v


class ApiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    workers: int = Field(1, ge=1, le=64)  # API processes (metrics merged across them)
    max_recipients: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_header_bytes: int = Field(16_384, ge=1024)  # request line + headers (else 431)
    max_ws_message_bytes: int = Field(65_536, ge=1024)  # one WebSocket message (else 1009)
    max_parts: int = Field(10, ge=1, le=255)
    default_region: str = "RU"
    idempotency_ttl: float = Field(86400.0, gt=0)
    # A key's rate: recipients/s for sends, requests/s for other calls. Keys stored with
    # rate_limit 0 get `rate_limit_default` (0: unlimited); keys made by POST /v1/keys or
    # `smsgw keys create` without a rate_limit get `new_key_rate_limit`.
    rate_limit_default: float = Field(0, ge=0)
    new_key_rate_limit: float = Field(100.0, ge=0)
    max_streams_per_key: int = Field(10, ge=1)  # SSE/WebSocket subscribers per key, per process
    max_streams: int = Field(1000, ge=1)  # SSE/WebSocket subscribers per API process
    # Seconds a key lookup is cached: a revoked key stops working everywhere, streams
    # included, within this time, in every API process.
    key_cache_ttl: float = Field(5.0, gt=0, le=300)
    rpc_timeout: float = Field(30.0, gt=0)
    outbox_interval: float = Field(1.0, gt=0)
    # Job batches awaiting their confirms at once, per API process: 1 costs the broker and
    # the API least per job (the whole loop is fastest); more publish more jobs a second
    # from an API with cores to spare (docs/performance.md).
    job_publishers: int = Field(1, ge=1, le=16)
    scheduler_interval: float = Field(1.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)


class WorkersConfig(_Section):
    prefetch: int = Field(32, ge=1)
    retry_delays: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0])
    max_attempts: int = Field(5, ge=1)
    heartbeat_interval: float = Field(5.0, gt=0)
    modem_metrics_port: int = Field(9102, ge=0, lt=65536)  # 0: pick a free port
    smpp_metrics_port: int = Field(9103, ge=0, lt=65536)
    metrics_host: str = "127.0.0.1"  # health/metrics address; 0.0.0.0 in containers
    state_dir: str = ".run/state"  # per-worker journals (sent jobs, TP-MR / SMSC id maps)


class WebhooksConfig(_Section):
    allow_private: bool = False
    timeout: float = Field(10.0, gt=0)
    retry_schedule: list[float] = Field(
        default_factory=lambda: [
            5.0,
            30.0,
            120.0,
            600.0,
            1800.0,
            3600.0,
            7200.0,
            14400.0,
            28800.0,
            43200.0,
        ]
    )
    concurrency_per_endpoint: int = Field(8, ge=1)
    # Deliveries in flight to one host (every URL on it, whatever the port) and in all, per
    # inbound process: many subscriptions or status_callback URLs on one host are no more
    # than this many requests to it at once.
    concurrency_per_host: int = Field(16, ge=1)
    concurrency_total: int = Field(128, ge=1)
    max_body_bytes: int = Field(65536, ge=1024)
    # whsec_…: signs the status_callback calls of messages stored without an API key (the
    # sending key signs the others, docs/webhooks.md); none: those are unsigned.
    callback_secret: str | None = None
    poll_interval: float = Field(0.2, gt=0)  # how often the dispatcher looks for due deliveries
    previous_secret_ttl: float = Field(86400.0, ge=0)  # old secret still signs after a rotate


class InboundConfig(_Section):
    reassembly_timeout: float = Field(3600.0, gt=0)
    metrics_port: int = Field(9101, ge=0, lt=65536)
    metrics_host: str = "127.0.0.1"  # health/metrics address; 0.0.0.0 in containers
    # status events per transaction; prefetch is 3x, in messages (a pack holds up to 50)
    batch_size: int = Field(500, ge=1)
    # seconds a batch smaller than batch_size waits for more events after its first one:
    # fewer, bigger transactions (issue 20: 110-130 -> 330-400 events a batch under load,
    # inbound and PostgreSQL -15% CPU a message); a lone event is projected that much later
    batch_linger: float = Field(0.1, ge=0, le=10)
    expiry_interval: float = Field(5.0, gt=0)  # validity expiry and reassembly timeout sweeps
    expiry_grace: float = Field(3600.0, ge=0)  # sent messages wait this long for a late report
    report_match_window: float = Field(7 * 86400.0, gt=0)  # how far back a report may match


class RetentionConfig(_Section):
    """How long stored data is kept, in days (0: forever); the inbound service deletes what
    is older in bounded batches (docs: README "Data retention")."""

    messages_days: float = Field(90.0, ge=0)  # sent messages with their parts and history
    event_log_days: float = Field(7.0, ge=0)  # the log live streams resume from
    webhook_deliveries_days: float = Field(30.0, ge=0)  # finished deliveries and attempts
    inbound_days: float = Field(90.0, ge=0)  # received SMS and their parts
    interval: float = Field(300.0, gt=0)  # seconds between passes
    batch_size: int = Field(5000, ge=1, le=100_000)  # rows per delete statement


class CompatConfig(_Section):
    """The seed-compatible APIs (docs/compat.md)."""

    smssender_key_param: str = Field("access-token", min_length=1)  # SMSSender's token name
    smssender_wait: float = Field(60.0, ge=0)  # seconds send_sms waits for the modem
    smssender_balance_modem: str = ""  # modem for get_balance; "" = the first configured
    smstools_list_limit: int = Field(1000, ge=1)  # ids per /api/v1.0/sms/<kind>/ listing
    smsapiserver_open_networks: list[str] = Field(default_factory=list)  # CIDRs without a key
    smsapiserver_open_key: str = ""  # name of the key that open-network callers act as
    smstele_timezone: str = "Europe/Moscow"  # for `deferred` and status timestamps
    smstele_max_id_length: int = Field(64, ge=1, le=128)  # client `id` (stored as reference)
    smstele_max_text_length: int = Field(2000, ge=1)  # characters of `mes` (else -41)
    smstele_validity_unit: Literal["seconds", "minutes", "hours"] = "seconds"
    smstele_status_limit: int = Field(1000, ge=1)  # results per status query

    @field_validator("smsapiserver_open_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"invalid network {net!r}: {exc}") from exc
        return v

    @field_validator("smstele_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _open_key(self) -> CompatConfig:
        if self.smsapiserver_open_networks and not self.smsapiserver_open_key:
            raise ValueError("smsapiserver_open_networks needs smsapiserver_open_key")
        return self


class SimulatorsConfig(_Section):
    smsc: bool = False
    modems: int = Field(0, ge=0, le=64)
    smsc_host: str = "127.0.0.1"
    smsc_port: int = 2775
    smsc_control_port: int = 2780
    modem_host: str = "127.0.0.1"  # 0.0.0.0 in containers
    modem_base_port: int = 7001
    modem_control_port: int = 7000
    modem_send_latency: float = Field(0.0, ge=0)
    modem_noise_interval: float = Field(0.0, ge=0)  # ^RSSI/^MODE/^BOOT URCs; 0: off
    dlr_delay: float = Field(1.0, ge=0)
    smsc_system_id: str = "smsgw"
    smsc_password: str = "secret"
    smsc_id_format: Literal["hex", "decimal"] = "hex"


class Settings(BaseSettings):
    """Everything a service needs; built once in `main()` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="SMSGW_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    config: str | None = None
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/smsgw"
    namespace: str = Field("smsgw", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    bootstrap_api_key: str | None = None
    environment: Literal["development", "production"] = "production"
    # Seconds a service gives the work in hand after SIGTERM/SIGINT (jobs being sent, events
    # being applied, requests being answered) before it gives the rest back and exits.
    shutdown_timeout: float = Field(25.0, gt=0)

    api: ApiConfig = Field(default_factory=ApiConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    inbound: InboundConfig = Field(default_factory=InboundConfig)
    modems: list[ModemConfig] = Field(default_factory=list)
    smpp: SmppConfig = Field(default_factory=SmppConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    simulators: SimulatorsConfig = Field(default_factory=SimulatorsConfig)
    compat: CompatConfig = Field(default_factory=CompatConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        for kind, ids in (
            ("modems", [m.id for m in self.modems]),
            ("smpp.binds", [b.id for b in self.smpp.binds]),
        ):
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(sorted(dup))}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: every SMSGW_* variable wins over the file (DESIGN.md).
        return (init_settings, env_settings)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the asyncpg driver SQLAlchemy needs."""
        return to_asyncpg_url(self.database_url)


def to_asyncpg_url(url: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…`."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found (set by SMSGW_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from exc


def _format_error(source: str, exc: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings: the TOML file (argument or SMSGW_CONFIG), then env vars on top."""
    file_name = str(path) if path is not None else os.environ.get("SMSGW_CONFIG")
    data: dict[str, Any] = {}
    if file_name:
        data = _read_toml(Path(file_name))
    source = file_name or "environment"
    try:
        env_only = Settings.model_validate({"config": file_name} | overrides)
    except ValidationError as exc:
        raise ConfigError(_format_error("SMSGW_* environment variables", exc)) from exc
    try:
        merged = _deep_merge(data, _explicit_env(env_only)) | overrides | {"config": file_name}
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from exc


def _explicit_env(env_settings: Settings) -> dict[str, Any]:
    """Only the fields the environment actually set, so file values survive underneath."""
    return env_settings.model_dump(exclude_unset=True, exclude={"config"})


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
