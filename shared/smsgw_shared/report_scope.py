"""Which routes share delivery receipts.

An SMSC account is often bound more than once (for throughput, or a second bind through
another SMSC node), and the SMSC may send a receipt on any bind of the account, not only on
the one that submitted the message. The store matches a receipt to its part by route and
provider id, so binds of one account must be matched as one: a receipt that arrives on
`smpp:b2` for a part submitted on `smpp:b1` is found under the account's scope (its first
bind by name). Where two binds of a scope hold a part with the same provider id, the part
submitted on the bind the receipt came on wins.

Binds are of one account when they name the same `account`; binds that name none are of
one account when host, port and system_id are the same. Every other route (modems, binds
alone on their account) is its own scope. The inbound service reads the binds from the
configuration the workers use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from smsgw_shared.config import Settings, SmppBindConfig

Key = tuple[str, str]  # (route, provider id)


def account_of(bind: SmppBindConfig) -> str:
    """The account a bind belongs to: its `account`, else system_id@host:port. Binds that
    write provider ids differently (`id_format`) are never one account: the same id would
    not name the same message."""
    name = bind.account or f"{bind.system_id}@{bind.host}:{bind.port}"
    return f"{name}#{bind.id_format}/{bind.receipt_id_format}"


class ReportScopes:
    """Maps each route to the route its receipts are matched under, and back."""

    def __init__(self, groups: Iterable[Sequence[str]] = ()) -> None:
        self._scope: dict[str, str] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        for group in groups:
            # Sorted: every process names the scope alike whatever the order of its config
            # (the scope is also the advisory lock key two inbound replicas share).
            members = tuple(sorted(set(group)))
            if len(members) < 2:
                continue
            for route in members:
                self._scope[route] = members[0]
            self._members[members[0]] = members

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportScopes:
        """The configured binds, grouped by account."""
        groups: dict[str, list[str]] = {}
        for bind in settings.smpp.binds:
            groups.setdefault(account_of(bind), []).append(f"smpp:{bind.id}")
        return cls(groups.values())

    def scope(self, route: str) -> str:
        """The route receipts of `route` are matched under (itself unless it shares)."""
        return self._scope.get(route, route)

    def members(self, scope: str) -> tuple[str, ...]:
        """Every route matched under `scope`."""
        return self._members.get(scope, (scope,))

    def key(self, route: str, provider_id: str) -> Key:
        """The scoped (route, provider id) key receipts are matched and locked by."""
        return self.scope(route), provider_id

    def expand(self, keys: Iterable[Key]) -> list[Key]:
        """Scoped keys as the stored (route, provider id) pairs they stand for."""
        return sorted({(m, pid) for scope, pid in keys for m in self.members(scope)})
