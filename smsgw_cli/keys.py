"""`smsgw keys create|list|revoke`."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from smsgw_api.schemas import KeyCreate
from smsgw_shared.config import Settings
from smsgw_shared.store.db import ensure_database, make_engine
from smsgw_shared.store.repos.keys import DuplicateKeyName, KeyRepository


def _checked(args: argparse.Namespace) -> KeyCreate:
    """The key to create, checked as `POST /v1/keys` checks it; exits 2 with the reasons."""
    fields = {
        "name": args.name,
        "scopes": args.scope or ["send", "read"],
        "allowed_prefixes": args.allow_prefix,
        "allowed_regex": args.allow_regex,
        "allowed_senders": args.allow_sender,
        "rate_limit": args.rate_limit,
        "routes": args.route or [],
        "secret": args.secret,
    }
    try:
        body = KeyCreate.model_validate(fields)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "key"
            print(f"smsgw: invalid {where}: {e['msg']}", file=sys.stderr)
        sys.exit(2)
    bad_regex = body.regex_error()
    if bad_regex:
        print(f"smsgw: invalid allowed_regex: {bad_regex}", file=sys.stderr)
        sys.exit(2)
    return body


async def run_keys(settings: Settings, args: argparse.Namespace) -> None:
    """Run one keys subcommand against the configured store."""
    body = _checked(args) if args.keys == "create" else None
    await ensure_database(settings.database_url)  # a clear message if PostgreSQL is down
    engine = make_engine(settings.database_url, pool_size=1)
    repo = KeyRepository(engine)
    try:
        if body is not None:
            try:
                key, secret = await repo.create(**body.create_args(settings.api.new_key_rate_limit))
            except DuplicateKeyName as exc:
                print(f"smsgw: {exc}", file=sys.stderr)
                sys.exit(1)
            routes = f" routes={','.join(key.routes)}" if key.routes else ""
            print(f"created key {key.name} ({key.id}) scopes={','.join(key.scopes)}{routes}")
            print(f"secret (shown once): {secret}")
        elif args.keys == "list":
            for k in await repo.list():
                print(f"{k.id}  {k.name:<24} {','.join(k.scopes):<16} {k.secret_prefix}…")
        elif args.keys == "revoke":
            found = await repo.find(args.key)
            if found is None or not await repo.revoke(found.id):
                print(f"smsgw: no active key {args.key!r}", file=sys.stderr)
                sys.exit(1)
            print(f"revoked {found.name} ({found.id})")
    finally:
        await engine.dispose()
