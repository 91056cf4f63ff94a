"""A plain asyncpg connection for a hot-path writer, outside SQLAlchemy's pool.

The accept path writes a few thousand rows a second in a handful of statements. Going
through SQLAlchemy costs a pre-ping round trip per checkout and Python work per row
(parameter processing, insertmanyvalues); a connection of its own with prepared
statements over arrays costs neither. One `DirectConnection` belongs to one task at a time:
it is not a pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw_shared.store.db import StoreUnavailable

T = TypeVar("T")


def _statement_error(exc: BaseException) -> bool:
    """The server refused a statement (constraint, syntax…) and the connection is fine;
    anything else (lost socket, shutdown, cancellation, client state error) is not."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
    )


def asyncpg_dsn(url: URL) -> str:
    """A SQLAlchemy engine URL as the plain DSN asyncpg takes."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class DirectConnection:
    """One asyncpg connection, opened on first use and again after it is lost."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        application_name: str = "smsgw",
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        # PostgreSQL settings of the session (`plan_cache_mode`…), with its name
        self.server_settings = {"application_name": application_name, **(server_settings or {})}
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        # A server restart closes the socket, which asyncpg notices: no ping needed.
        if conn is not None and not conn.is_closed():
            return conn
        self._conn = None
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings=self.server_settings,
        )
        self._conn = conn
        return conn

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn(connection)`, one caller at a time. A statement error (constraint…) is
        raised as it is; any other failure drops the connection (the next call opens a new
        one) and raises `StoreUnavailable`."""
        async with self._lock:
            try:
                conn = await self._connection()
            except Exception as exc:  # refused, timed out, auth, no such database…
                raise StoreUnavailable(f"PostgreSQL is not reachable: {exc!r}") from exc
            try:
                return await fn(conn)
            except asyncio.CancelledError:
                self._discard()  # cancelled mid-statement: protocol state unknown
                raise
            except Exception as exc:
                if _statement_error(exc) and not conn.is_closed():
                    raise
                # Lost, shut down, or in an unknown client state: the next call starts on
                # a new connection, and the caller sees the store as unavailable.
                self._discard()
                raise StoreUnavailable(f"PostgreSQL connection lost: {exc!r}") from exc

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (Exception, asyncio.CancelledError):
                conn.terminate()


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy connection, inside its transaction.

    For a hot statement over arrays in a transaction SQLAlchemy owns (the projection's
    writes): it skips SQLAlchemy's compilation and per-row parameter work. SQLAlchemy begins
    its transaction on the first statement, so one is sent first when none was yet."""
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert isinstance(pg, asyncpg.Connection)
    if not pg.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return pg
