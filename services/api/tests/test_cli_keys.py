"""`smsgw keys create|list|revoke`: what an operator types, checked as the API checks keys."""

from __future__ import annotations

import os
import subprocess
import sys

from smsgw_shared.config import Settings


def smsgw(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env["SMSGW_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "smsgw_cli.main", "keys", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_revoke(db_settings: Settings):
    made = smsgw(
        db_settings,
        "create",
        "cli-shop",
        "--scope",
        "send",
        "--allow-prefix",
        "+7916",
        "--allow-regex",
        r"^\+7(916|925)",
        "--rate-limit",
        "5",
    )
    assert made.returncode == 0, made.stderr
    assert "created key cli-shop" in made.stdout and "scopes=send" in made.stdout
    secret = made.stdout.split("secret (shown once): ")[1].strip()
    assert secret.startswith("sgw_") or len(secret) >= 20
    listed = smsgw(db_settings, "list")
    assert "cli-shop" in listed.stdout and secret not in listed.stdout
    again = smsgw(db_settings, "create", "cli-shop")
    assert again.returncode == 1 and "exists already" in again.stderr
    revoked = smsgw(db_settings, "revoke", "cli-shop")
    assert revoked.returncode == 0 and "revoked cli-shop" in revoked.stdout
    assert "cli-shop" not in smsgw(db_settings, "list").stdout
    gone = smsgw(db_settings, "revoke", "cli-shop")
    assert gone.returncode == 1 and "no active key" in gone.stderr


def test_bad_keys_are_refused_and_not_stored(db_settings: Settings):
    for argv, reason in [
        (["create", "cli-bad", "--allow-regex", "("], "allowed_regex"),
        (["create", "bad name!"], "name"),
        (["create", "cli-bad", "--secret", "short"], "secret"),
        (["create", "cli-bad", "--rate-limit", "-1"], "rate_limit"),
    ]:
        r = smsgw(db_settings, *argv)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert f"invalid {reason}" in r.stderr, r.stderr
    assert "cli-bad" not in smsgw(db_settings, "list").stdout
