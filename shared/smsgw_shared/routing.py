"""Routing: which queue a message goes to.

An explicit route in the request wins (`modem:<id>`, `smpp:<id>`, `modem:*`, `smpp:*`,
`pool:<name>`), else the first rule whose prefix/regex matches the E.164 number, else the
default. Pure code: no broker, no store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smsgw_shared.config import Settings


class UnknownRouteError(ValueError):
    """The route names no configured modem, bind or pool."""


@dataclass(frozen=True)
class _Rule:
    prefix: str | None
    regex: re.Pattern[str] | None
    to: str

    def matches(self, number: str) -> bool:
        if self.prefix is not None:
            return number.startswith(self.prefix)
        assert self.regex is not None
        return self.regex.search(number) is not None


class Router:
    """Resolves routes against the configured modems, binds and rules."""

    def __init__(self, settings: Settings) -> None:
        self.modems = {m.id for m in settings.modems}
        self.binds = {b.id for b in settings.smpp.binds}
        self.pools = {p for m in settings.modems for p in m.pools} | {
            p for b in settings.smpp.binds for p in b.pools
        }
        self.default = settings.routing.default
        self.rules = [
            _Rule(r.prefix, re.compile(r.regex) if r.regex else None, r.to)
            for r in settings.routing.rules
        ]

    def known_routes(self) -> list[str]:
        """Every route a request may name."""
        return (
            ["modem:*", "smpp:*"]
            + [f"modem:{m}" for m in sorted(self.modems)]
            + [f"smpp:{b}" for b in sorted(self.binds)]
            + [f"pool:{p}" for p in sorted(self.pools)]
        )

    def check(self, route: str) -> str:
        """Return `route` if it can be served, else raise `UnknownRouteError`."""
        kind, _, name = route.partition(":")
        ok = (
            (kind == "modem" and (name == "*" or name in self.modems))
            or (kind == "smpp" and (name == "*" or name in self.binds))
            or (kind == "pool" and name in self.pools)
        )
        if not ok:
            raise UnknownRouteError(
                f"unknown route {route!r}; known: {', '.join(self.known_routes())}"
            )
        return route

    def resolve(self, number: str, explicit: str | None = None) -> str:
        """The route for one E.164 number."""
        if explicit:
            return self.check(explicit)
        for rule in self.rules:
            if rule.matches(number):
                return rule.to
        return self.default
