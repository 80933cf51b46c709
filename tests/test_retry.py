"""Which errors the worker tries again: each one raised for real here (a locked SQLite file, an unreachable
PostgreSQL port, a broker that is down, a missing table), never built by hand where a real one can be had."""
from __future__ import annotations

import errno
import logging
import sqlite3

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from fitboard.app.core.errors import StorageUnavailable
from fitboard.worker.retry import retrying, transient

log = logging.getLogger(__name__)


def _raised(fn) -> BaseException:
    """The exception fn raises."""
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.fixture
def sqlite_file(tmp_path):
    """A SQLite file with one table holding one row."""
    path = tmp_path / "locked.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    return path


def test_sqlite_lock_contention_is_transient_and_a_missing_table_or_constraint_is_not(sqlite_file):
    holder = sqlite3.connect(sqlite_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    engine = create_engine(f"sqlite:///{sqlite_file}", connect_args={"timeout": 0})
    try:
        def write(sql):
            with engine.begin() as conn:
                conn.execute(text(sql))

        locked = _raised(lambda: write("INSERT INTO t VALUES (2)"))
        assert isinstance(locked, OperationalError) and "database is locked" in str(locked)
        assert transient(locked)
        holder.execute("ROLLBACK")
        missing = _raised(lambda: write("INSERT INTO no_such_table VALUES (2)"))
        assert isinstance(missing, OperationalError) and "no such table" in str(missing)
        assert not transient(missing)
        duplicate = _raised(lambda: write("INSERT INTO t VALUES (1)"))
        assert isinstance(duplicate, IntegrityError) and not transient(duplicate)
    finally:
        holder.close()
        engine.dispose()


def test_an_unreachable_postgres_broker_and_bucket_are_transient():
    engine = create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    refused = _raised(engine.connect)
    engine.dispose()
    assert isinstance(refused, OperationalError) and transient(refused)
    broker = Connection("redis://127.0.0.1:1/0", connect_timeout=2)
    down = _raised(lambda: broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0))
    broker.release()
    assert transient(down), type(down)
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:1", aws_access_key_id="k", aws_secret_access_key="s",
                      region_name="us-east-1", config=Config(connect_timeout=2, retries={"max_attempts": 1}))
    unreachable = _raised(lambda: s3.put_object(Bucket="b", Key="k", Body=b"x"))
    assert type(unreachable).__name__ == "EndpointConnectionError" and transient(unreachable)


def test_os_errors_count_by_what_a_moment_can_cure():
    assert transient(OSError(errno.ENOSPC, "No space left on device"))
    assert transient(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert transient(TimeoutError("timed out"))
    assert not transient(_raised(lambda: open("/nonexistent/fitboard/model.pkl", "rb")))  # FileNotFoundError
    assert not transient(IsADirectoryError(errno.EISDIR, "Is a directory"))


def test_a_stores_5xx_and_throttling_are_transient_and_its_4xx_are_not():
    def client_error(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert transient(client_error(500, "InternalError")) and transient(client_error(503, "SlowDown"))
    assert not transient(client_error(403, "AccessDenied")) and not transient(client_error(404, "NoSuchBucket"))
    try:  # the store wraps the backend's error: judged by what the backend said
        raise StorageUnavailable("bucket: could not read") from client_error(503, "SlowDown")
    except StorageUnavailable as exc:
        assert transient(exc)
    assert not transient(StorageUnavailable("a probe object read back different bytes"))


def test_programming_errors_are_never_transient():
    for exc in (TypeError("f() takes 1 positional argument but 2 were given"), KeyError("stages"),
                AttributeError("'NoneType' object has no attribute 'put'"), ValueError("bad"), RuntimeError("x")):
        assert not transient(exc), exc


def test_retrying_tries_a_bug_once_and_a_transient_error_until_it_passes():
    calls = []

    def flaky(error: Exception, fails: int):
        calls.append(1)
        if len(calls) <= fails:
            raise error
        return "done"

    def run(error: Exception, fails: int):
        calls.clear()
        for attempt in retrying("test write", log, backoff_max=0.01, seconds=30):
            with attempt:
                return flaky(error, fails)

    assert run(ConnectionResetError(errno.ECONNRESET, "reset"), fails=2) == "done" and len(calls) == 3
    with pytest.raises(TypeError, match="unexpected keyword"):
        run(TypeError("put() got an unexpected keyword argument 'mode'"), fails=2)
    assert len(calls) == 1
