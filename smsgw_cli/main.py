"""`smsgw`: one command line for every service, the simulators, the dev runner, migrations
and API keys. Configuration problems print one readable message, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from smsgw_shared.config import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config) if args.config else load_settings()


def _exit_0_after_graceful_stop() -> None:
    """uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again with the
    handler it found installed: with the default one the process dies by the signal (exit
    -15). With this one a graceful stop ends with exit code 0, as every service's does."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit)


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from smsgw_api.app import create_app
    from smsgw_api.server import uvicorn_options
    from smsgw_shared.observability import setup_logging

    s = _settings(args)
    setup_logging("api", s.log_level, s.log_format)
    host = args.host or s.api.host
    port = args.port if args.port is not None else s.api.port
    options = uvicorn_options(s)  # header and WebSocket message caps, logging
    _exit_0_after_graceful_stop()
    if s.api.workers == 1:
        uvicorn.run(create_app(s), host=host, port=port, **options)
        return
    # Several processes: each builds the app from SMSGW_CONFIG + env; metrics are merged
    # through prometheus_client's multiprocess directory.
    import tempfile

    if args.config:
        os.environ["SMSGW_CONFIG"] = args.config
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="smsgw-metrics-"))
    uvicorn.run(
        "smsgw_api.app:app_from_env",
        factory=True,
        workers=s.api.workers,
        host=host,
        port=port,
        **options,
    )


def cmd_inbound(args: argparse.Namespace) -> None:
    from smsgw_inbound.service import run
    from smsgw_shared.runtime import run_service

    s = _settings(args)
    run_service(
        "inbound", s, lambda st, stop: run(st, stop, metrics_port=args.metrics_port), uvloop=True
    )


def cmd_modem_worker(args: argparse.Namespace) -> None:
    from smsgw_modem.service import run
    from smsgw_shared.runtime import run_service

    s = _settings(args)
    ids = args.modem or None
    unknown = set(ids or []) - {m.id for m in s.modems}
    if unknown:
        raise ConfigError(f"unknown modem id(s): {', '.join(sorted(unknown))}")
    run_service(
        "modem-worker", s, lambda st, stop: run(st, stop, ids, metrics_port=args.metrics_port)
    )


def cmd_smpp_worker(args: argparse.Namespace) -> None:
    from smsgw_shared.runtime import run_service
    from smsgw_smpp.service import run

    s = _settings(args)
    ids = args.bind or None
    unknown = set(ids or []) - {b.id for b in s.smpp.binds}
    if unknown:
        raise ConfigError(f"unknown bind id(s): {', '.join(sorted(unknown))}")
    run_service(
        "smpp-worker",
        s,
        lambda st, stop: run(st, stop, ids, metrics_port=args.metrics_port),
        uvloop=True,
    )


def cmd_sim_smsc(args: argparse.Namespace) -> None:
    from smsgw_shared.runtime import run_service
    from smsgw_smpp.sim import run_simulator

    s = _settings(args)
    sim = s.simulators
    run_service(
        "sim-smsc",
        s,
        lambda st, stop: run_simulator(
            st,
            stop,
            args.host or sim.smsc_host,
            args.port or sim.smsc_port,
            args.control_port or sim.smsc_control_port,
        ),
    )


def cmd_sim_modem(args: argparse.Namespace) -> None:
    from smsgw_modem.sim import run_simulator
    from smsgw_shared.runtime import run_service

    s = _settings(args)
    sim = s.simulators
    run_service(
        "sim-modem",
        s,
        lambda st, stop: run_simulator(
            st,
            stop,
            args.count if args.count is not None else max(sim.modems, 1),
            args.base_port or sim.modem_base_port,
            args.control_port or sim.modem_control_port,
            sim.modem_send_latency if args.latency is None else args.latency,
        ),
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    from smsgw_shared.store.migrate import downgrade, upgrade

    s = _settings(args)
    if args.down:
        downgrade(s.database_url, args.down)
        print(f"migrated {s.database_url.rsplit('/', 1)[-1]} down to {args.down}")
    else:
        upgrade(s.database_url)
        print(f"database {s.database_url.rsplit('/', 1)[-1]} is at the latest schema")


def cmd_dev(args: argparse.Namespace) -> None:
    from smsgw_cli.dev import run_dev

    sys.exit(run_dev(_settings(args), args))


def cmd_keys(args: argparse.Namespace) -> None:
    from smsgw_cli.keys import run_keys

    asyncio.run(run_keys(_settings(args), args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smsgw", description="SMS gateway")
    p.add_argument("--config", help="TOML config file (default: $SMSGW_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], None], help_: str) -> Any:
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=fn)
        return sp

    sp = add("api", cmd_api, "run the REST API")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp = add("inbound", cmd_inbound, "run the inbound service (status, incoming SMS, webhooks)")
    sp.add_argument("--metrics-port", type=int)
    sp = add("modem-worker", cmd_modem_worker, "run modem workers (all, or --modem ID ...)")
    sp.add_argument("--modem", action="append", help="modem id (repeatable)")
    sp.add_argument("--metrics-port", type=int)
    sp = add("smpp-worker", cmd_smpp_worker, "run SMPP binds (all, or --bind ID ...)")
    sp.add_argument("--bind", action="append", help="bind id (repeatable)")
    sp.add_argument("--metrics-port", type=int)

    sim = sub.add_parser("sim", help="simulators").add_subparsers(dest="sim", required=True)
    sp = sim.add_parser("smsc", help="SMPP 3.4 SMSC simulator")
    sp.set_defaults(func=cmd_sim_smsc)
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--control-port", type=int)
    sp = sim.add_parser("modem", help="GSM modem simulator (TCP + pty)")
    sp.set_defaults(func=cmd_sim_modem)
    sp.add_argument("--count", type=int)
    sp.add_argument("--base-port", type=int)
    sp.add_argument("--control-port", type=int)
    sp.add_argument("--latency", type=float, help="seconds per AT+CMGS")

    sp = add("dev", cmd_dev, "run everything (services + simulators) in the foreground")
    sp.add_argument("--no-migrate", action="store_true")
    sp = add("migrate", cmd_migrate, "create the database if missing and migrate it")
    sp.add_argument("--down", metavar="REVISION", help="migrate down to REVISION (e.g. base)")

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    sp = keys.add_parser("create", help="create a key (prints the secret once)")
    sp.set_defaults(func=cmd_keys)
    sp.add_argument("name")
    sp.add_argument(
        "--scope", action="append", choices=["send", "read", "admin", "modems", "webhooks"]
    )
    sp.add_argument("--allow-prefix", action="append", default=[])
    sp.add_argument("--allow-regex")
    sp.add_argument("--allow-sender", action="append", default=[])
    sp.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="recipients/s (0: unlimited; default: api.new_key_rate_limit)",
    )
    sp.add_argument(
        "--route",
        action="append",
        default=[],
        help="route-limited key: modem:m2, smpp:b1, pool:name, modem:* (repeatable)",
    )
    sp.add_argument("--secret", help="use this secret (e.g. a seed client's existing token)")
    sp = keys.add_parser("list", help="list keys")
    sp.set_defaults(func=cmd_keys)
    sp = keys.add_parser("revoke", help="revoke a key (by id or name)")
    sp.set_defaults(func=cmd_keys)
    sp.add_argument("key")

    from smsgw_cli.ops import add_ops_commands

    add_ops_commands(sub)  # status, send, tail, messages, webhooks: over the HTTP API
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `smsgw` command."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
        sys.exit(2)
    except ConnectionError as exc:  # BrokerUnavailable, StoreUnavailable
        print(f"smsgw: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
