"""How the event streams learn that the database changed, without polling it with queries: PostgreSQL's
LISTEN/NOTIFY (every fitboard writer notifies on commit, see app.store.db), or on SQLite a stat() of the database
and its write-ahead log every few milliseconds (every commit changes the log). A look at the database follows only
a change; a slow backstop look catches anything a signal could miss."""
from __future__ import annotations

import asyncio
import logging
import os

from sqlalchemy import Engine

from fitboard.app.store.db import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
STAT_SECONDS = 0.005  # SQLite: how often the files are looked at (two stat calls, in the event loop)


class Signal:
    """Waits for a sign that something was committed; the base class has none and waits the whole timeout."""

    async def wait(self, timeout: float) -> bool:
        """True when a change was signalled, False when timeout seconds passed without one."""
        await asyncio.sleep(timeout)
        return False

    def close(self) -> None:
        pass


class FileSignal(Signal):
    """SQLite in WAL mode: a commit changes the -wal file (its size or modification time) or the database file."""

    def __init__(self, path: str):
        self.paths = (path, path + "-wal")
        self.seen = self._state()

    def _state(self) -> tuple:
        out = []
        for path in self.paths:
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    async def wait(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            state = self._state()
            if state != self.seen:
                self.seen = state
                return True
            await asyncio.sleep(STAT_SECONDS)
        return False


class NotifySignal(Signal):
    """PostgreSQL: LISTEN on a connection of its own, read by the event loop when the socket has data."""

    def __init__(self, engine: Engine):
        raw = engine.raw_connection()
        raw.detach()  # ours alone, never back in the pool
        self.conn = raw.dbapi_connection
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.event = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            self.conn.poll()
        except Exception:  # the connection broke: the backstop look carries on; close() cleans up
            log.warning("LISTEN connection lost; event streams fall back to their backstop look", exc_info=True)
            self.close()
            self.event.set()
            return
        if self.conn.notifies:
            self.conn.notifies.clear()
            self.event.set()

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        self.event.clear()
        return True

    def close(self) -> None:
        try:
            self.loop.remove_reader(self.conn.fileno())
        except Exception:
            pass
        try:
            self.conn.close()
        except Exception:
            pass


def signal_for(engine: Engine) -> Signal:
    """The cheapest change signal the engine's database offers (call from the event loop)."""
    if engine.dialect.name == "postgresql":
        try:
            return NotifySignal(engine)
        except Exception:
            log.warning("could not LISTEN for changes; event streams poll instead", exc_info=True)
            return Signal()
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        return FileSignal(os.path.abspath(database))
    return Signal()
