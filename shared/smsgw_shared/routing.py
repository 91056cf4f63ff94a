"""Routing: which queue a message goes to.

An explicit route in the request wins (`modem:<id>`, `smpp:<id>`, `modem:*`, `smpp:*`,
`pool:<name>`), else the first rule whose prefix/regex matches the E.164 number, else the
default. Pure code: no broker, no store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from smsgw_shared.config import Settings


class UnknownRouteError(ValueError):
    """The route names no configured modem, bind or pool."""


class RouteNotAllowedError(ValueError):
    """The key may not use this route (a route-limited key, naming another route)."""


def route_matches(pattern: str, route: str | None) -> bool:
    """`modem:*` matches every modem; anything else must be equal."""
    if route is None:
        return False
    if pattern.endswith(":*"):
        return route.startswith(pattern[:-1])
    return pattern == route


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
        members: dict[str, set[str]] = {}
        for m in settings.modems:
            for p in m.pools:
                members.setdefault(p, set()).add(f"modem:{m.id}")
        for b in settings.smpp.binds:
            for p in b.pools:
                members.setdefault(p, set()).add(f"smpp:{b.id}")
        self.pool_members = {p: frozenset(v) for p, v in members.items()}
        self.pools = set(self.pool_members)
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

    def covers(self, allowed: Iterable[str], route: str) -> bool:
        """Whether a key limited to `allowed` routes may use `route`: a route it lists, a
        modem or bind of a pool it lists (`modem:*` holds every modem, `pool:x` its
        members); a pool itself only when listed (it reaches members the key may not)."""
        allowed = tuple(allowed)
        if route in allowed:
            return True
        kind, _, name = route.partition(":")
        if name == "*" or kind not in {"modem", "smpp"}:
            return False
        if f"{kind}:*" in allowed:
            return True
        return any(
            a.startswith("pool:") and route in self.pool_members.get(a[5:], ()) for a in allowed
        )

    def visible_patterns(self, allowed: Iterable[str]) -> tuple[str, ...]:
        """The routes (`modem:m1`) and route patterns (`modem:*`) whose traffic a key
        limited to `allowed` may see: its pools expanded to their members."""
        out: list[str] = []
        for a in allowed:
            if a.startswith("pool:"):
                out.extend(sorted(self.pool_members.get(a[5:], ())))
            else:
                out.append(a)
        return tuple(dict.fromkeys(out))

    def resolve(self, number: str, explicit: str | None = None, allowed: Iterable[str] = ()) -> str:
        """The route for one E.164 number; with `allowed` (a route-limited key) only among
        those routes: an explicit route outside them raises `RouteNotAllowedError`, rules
        and the default are skipped when they point elsewhere, and the key's first route
        that is configured is the last resort."""
        allowed = tuple(allowed)
        if explicit:
            route = self.check(explicit)
            if allowed and not self.covers(allowed, route):
                raise RouteNotAllowedError(f"this key may send only through {', '.join(allowed)}")
            return route
        for rule in self.rules:
            if rule.matches(number) and (not allowed or self.covers(allowed, rule.to)):
                return rule.to
        if not allowed or self.covers(allowed, self.default):
            return self.default
        for a in allowed:
            try:
                return self.check(a)
            except UnknownRouteError:
                continue
        raise RouteNotAllowedError(
            f"none of this key's routes ({', '.join(allowed)}) is configured here"
        )
