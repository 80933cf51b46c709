"""The worker's retries, through tenacity: exponential backoff from half a second, capped at
Settings.retry_backoff_max, until a time limit would pass or the worker is stopping. Only a transient error is tried
again (a lost connection, a timeout, a store's 5xx, a locked or full database, a broker down); a programming error
(a TypeError, a missing table) fails at once with its own message."""
from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable

import httpx
import kombu.exceptions
import redis.exceptions
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_any,
    stop_before_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential,
)

from fitboard.app.core.errors import StorageUnavailable

try:  # botocore comes with the s3 extra only
    from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as StoreConnectionError  # endpoint, connect timeout, proxy

    STORE_UNREACHABLE: tuple = (StoreConnectionError, ConnectionClosedError, ReadTimeoutError)
except ImportError:
    ClientError, STORE_UNREACHABLE = None, ()

FIRST_WAIT = 0.5  # seconds before the second try; each later wait doubles, up to the cap
# OS errors a moment can cure: a full or flaky disk, a stale shared mount, a network that drops or times out.
TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT,
                    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.EHOSTUNREACH,
                    errno.ENETUNREACH, errno.ENETDOWN}
# SQLite: another writer holds the lock (past busy_timeout), or the disk is full or failing; never "no such table".
SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PROTOCOL")
LOCK_MESSAGES = ("database is locked", "database table is locked", "database or disk is full", "disk i/o error")
# PostgreSQL SQLSTATEs worth waiting for: connection (08), resources such as a full disk (53), serialization and
# deadlock (40001, 40P01), a lock not available (55P03), a statement timeout (57014), a server shutting down or
# starting (57P01-57P03). No SQLSTATE at all: the server never answered.
PG_TRANSIENT = ("08", "53", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03")
# A broker or object store that cannot be reached or timed out (redis' and botocore's do not subclass the builtins).
REMOTE = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
          redis.exceptions.BusyLoadingError, httpx.TransportError)
THROTTLED = ("SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "ServiceUnavailable", "InternalError")


def _database(exc: DBAPIError) -> bool:
    """A database error of a dropped connection, lock contention or a full disk; never a bug's (a missing table,
    a constraint, bad SQL: IntegrityError, ProgrammingError and SQLite's plain SQLITE_ERROR)."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    orig = exc.orig
    if type(orig).__module__.startswith("psycopg2"):
        code = getattr(orig, "pgcode", None)
        return code is None or code.startswith(PG_TRANSIENT)
    name = getattr(orig, "sqlite_errorname", "") or ""
    return name.startswith(SQLITE_TRANSIENT) or any(m in str(orig).lower() for m in LOCK_MESSAGES)


def _store(exc: BaseException) -> bool:
    """An S3 store (botocore) that cannot be reached, timed out, throttled or answered 5xx."""
    if isinstance(exc, STORE_UNREACHABLE):
        return True
    if ClientError is None or not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or status == 429 or exc.response.get("Error", {}).get("Code") in THROTTLED


def transient(exc: BaseException) -> bool:
    """Whether an error is worth another try: lost connections, timeouts, a store's 5xx, database lock contention
    or a full disk, a broker down. A programming error (TypeError, KeyError, a missing table or column) is not."""
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError):
        return _database(exc)
    if isinstance(exc, (ConnectionError, TimeoutError, *REMOTE)):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    if _store(exc):  # before OSError: botocore's read timeout is one, without an errno
        return True
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    if isinstance(exc, StorageUnavailable) or type(exc).__name__ == "S3UploadFailedError":
        cause = exc.__cause__ or exc.__context__  # a wrapper: judge what the store itself said
        return cause is not None and transient(cause)
    return False


def retrying(what: str, log: logging.Logger, *, backoff_max: float, seconds: float | None = None,
             stopping: threading.Event | None = None,
             when: Callable[[BaseException], bool] = transient) -> Retrying:
    """A tenacity Retrying of the errors `when` calls transient: no try starts past `seconds` (None: no limit), and
    none once `stopping` is set; then the last exception is raised as it was. Any other error is raised at once.
    Each retry is logged, naming `what`."""
    stops = [stop_before_delay(seconds)] if seconds is not None else []
    if stopping is not None:
        stops.append(stop_when_event_set(stopping))

    def warn(state) -> None:
        log.warning("%s failed (%s); retrying in %.1f s", what, state.outcome.exception(), state.upcoming_sleep)

    return Retrying(retry=retry_if_exception(when), stop=stop_any(*stops) if stops else stop_never,
                    before_sleep=warn, reraise=True, wait=wait_exponential(multiplier=FIRST_WAIT, max=backoff_max))
