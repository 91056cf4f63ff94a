"""`/v1/keys`: API keys (admin scope)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from smsgw_api.deps import AdminKey, StateDep
from smsgw_api.problems import Problem
from smsgw_api.schemas import KeyCreate
from smsgw_shared.store.repos.keys import DuplicateKeyName

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, summary="Create an API key (secret shown once)")
async def create_key(body: KeyCreate, _: AdminKey, state: StateDep) -> JSONResponse:
    """Create a key with scopes, allowed numbers and senders, a rate limit and, for a
    route-limited key, the routes it may send through and see."""
    bad_regex = body.regex_error()
    if bad_regex:
        raise Problem(422, "invalid_regex", "Invalid allowed_regex", bad_regex)
    try:
        key, secret = await state.keys.create(
            **body.create_args(state.settings.api.new_key_rate_limit)
        )
    except DuplicateKeyName as exc:
        raise Problem(409, "key_name_taken", "Key name taken", str(exc)) from exc
    return JSONResponse(key.public() | {"secret": secret}, status_code=201)


@router.get("", summary="List API keys")
async def list_keys(_: AdminKey, state: StateDep) -> dict[str, Any]:
    """Every active key (never the secrets)."""
    return {"data": [k.public() for k in await state.keys.list()]}


def _uuid(key_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(key_id)
    except ValueError as exc:
        raise Problem(404, "key_not_found", "No such key", f"no key {key_id!r}") from exc


@router.get("/{key_id}", summary="One API key")
async def get_key(key_id: str, _: AdminKey, state: StateDep) -> dict[str, Any]:
    key = await state.keys.get(_uuid(key_id))
    if key is None:
        raise Problem(404, "key_not_found", "No such key", f"no key {key_id!r}")
    return key.public()


@router.delete("/{key_id}", summary="Revoke an API key")
async def revoke_key(key_id: str, admin: AdminKey, state: StateDep) -> dict[str, Any]:
    """Revoke a key; it stops working within seconds (cache TTL)."""
    kid = _uuid(key_id)
    if kid == admin.id:
        raise Problem(
            409,
            "cannot_revoke_self",
            "Cannot revoke the key in use",
            "use another admin key to revoke this one",
        )
    if not await state.keys.revoke(kid):
        raise Problem(404, "key_not_found", "No such key", f"no active key {key_id!r}")
    state.key_cache.forget()
    return {"id": key_id, "revoked": True}
