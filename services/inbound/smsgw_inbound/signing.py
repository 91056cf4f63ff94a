"""Standard Webhooks signatures (https://www.standardwebhooks.com, "Signature scheme").

`webhook-signature` is `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per
active secret, space separated, so receivers keep verifying while a secret is rotated.
Secrets are `whsec_` + base64 of the key bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from smsgw_shared.store.repos.webhooks import SECRET_PREFIX


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<signature>` entry."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for every active secret."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt (unsigned when there is no secret)."""
    out = {
        "content-type": "application/json",
        "user-agent": "smsgw-webhooks/1.0",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if secrets:
        out["webhook-signature"] = signature_header(secrets, msg_id, timestamp, body)
    return out
