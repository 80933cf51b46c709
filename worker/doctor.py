"""`fitboard doctor`: is this host ready to serve or train? One check per thing a fleet host depends on, each OK,
WARN or FAIL with the fix. Runs on a web-only install too (torch is imported only inside the GPU checks)."""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text

from fitboard.app.core.artifacts import store_for
from fitboard.app.core.redact import redact, redact_secrets
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import VERSION_TABLE, alembic_config, default_database_url, driver_url, make_engine
from fitboard.app.store.models import Run

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DISK_FAIL_BYTES, DISK_WARN_BYTES = 2 * 2**30, 20 * 2**30  # checkpoints and exported models of a few runs
SKEW_WARN_SECONDS = 2.0
NO_DATABASE = "not checked: the database is not reachable or not migrated"


@dataclass
class Check:
    """One line of the report: what was checked, how it stands, what was seen, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _database(settings: Settings) -> tuple[Check, Engine | None]:
    """Reachable, and migrated to the newest revision this version ships."""
    url = driver_url(default_database_url(settings))
    shown = redact(url)  # never print a user, password or query-string secret
    args = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}
    engine = make_engine(url, **args)
    try:
        with engine.connect() as conn:
            # fitboard's own version table: alembic_version belongs to Optuna's storage
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            current = ctx.get_current_revision()
    except Exception as exc:
        engine.dispose()
        return Check("database", FAIL, f"{shown}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                     "check FITBOARD_DATABASE_URL, that the server runs and that this host may connect"), None
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current != head:
        engine.dispose()  # the checks that read runs skip an unmigrated schema
        return Check("database", FAIL, f"{shown}: schema at revision {current or 'none'}, this version needs {head}",
                     "run `fitboard db upgrade` (a worker or `fitboard web` also migrates at start)"), None
    return Check("database", OK, f"{shown}: reachable, schema at revision {head}"), engine


def _broker(settings: Settings) -> Check:
    """Reachable, and (Redis) persisting to disk so queued runs survive a restart."""
    url = settings.broker_url
    if not url:
        return Check("broker", OK, "embedded broker (SQLite under FITBOARD_HOME): fine for one host",
                     "")
    if not url.startswith(("redis://", "rediss://")):
        return Check("broker", WARN, f"{redact(url)}: not Redis, so not checked")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    shown = redact(url)
    try:
        client.ping()
    except Exception as exc:
        return Check("broker", FAIL, f"{shown}: {type(exc).__name__}: {exc}",
                     "check FITBOARD_BROKER_URL and that Redis runs and is reachable from this host")
    try:
        aof = client.config_get("appendonly").get("appendonly")
    except Exception:  # managed Redis often refuses CONFIG
        return Check("broker", WARN, f"{shown}: reachable; persistence unknown (CONFIG GET refused)",
                     "make sure the server persists (appendonly yes): queued runs are lost on a restart otherwise")
    if aof != "yes":
        return Check("broker", WARN, f"{shown}: reachable, but appendonly is {aof}",
                     "start Redis with --appendonly yes so queued runs survive its restart")
    return Check("broker", OK, f"{shown}: reachable, append-only persistence on")


def _data_root(settings: Settings) -> Check:
    """The datasets folder exists and can be listed."""
    root = settings.data_root
    if not root.exists():
        return Check("data root", WARN, f"{root} does not exist: no dataset can be found by folder name",
                     "mount the shared datasets folder there, or set FITBOARD_DATA_ROOT")
    try:
        entries = sum(1 for _ in root.iterdir())
    except OSError as exc:
        return Check("data root", FAIL, f"{root}: {exc}", "give this user read access, or fix the mount")
    return Check("data root", OK, f"{root}: readable, {entries} entries")


def _artifacts(settings: Settings) -> Check:
    """The artifact store takes a write, gives it back and deletes it."""
    try:
        return Check("artifact store", OK, store_for(settings).probe())
    except Exception as exc:
        return Check("artifact store", FAIL, str(exc),
                     "fix FITBOARD_ARTIFACT_ROOT: a directory this user can write on every host (the same shared "
                     "mount), or s3://bucket/prefix with AWS credentials (and FITBOARD_S3_ENDPOINT_URL for MinIO)")


def _gpus() -> Check:
    """Which GPUs this process sees (a web-only install has no torch, and needs none)."""
    try:
        import torch
    except ImportError:
        return Check("gpus", WARN, "torch is not installed: this host can serve the web, not train",
                     "install fitboard[train] on GPU hosts")
    if not torch.cuda.is_available():
        return Check("gpus", WARN, "CPU only: no CUDA device visible; runs train slowly here",
                     "on a GPU host: install the NVIDIA driver and a CUDA build of torch, check CUDA_VISIBLE_DEVICES")
    names = [f"{i}: {p.name} ({p.total_memory / 2**30:.0f} GiB)"
             for i, p in ((i, torch.cuda.get_device_properties(i)) for i in range(torch.cuda.device_count()))]
    return Check("gpus", OK, "; ".join(names))


def _weights(engine: Engine | None) -> Check:
    """Pretrained weights are cached (and pass their hash check) for every architecture a stored recipe trains with
    pretrained: true; the detail lists what the cache holds, so the Workers page shows each host's weights."""
    if engine is None:
        return Check("weights", WARN, NO_DATABASE)
    with engine.connect() as conn:
        archs = sorted({a for a in conn.execute(select(Run.spec["arch"].as_string()).where(
            Run.spec["pretrained"].as_boolean().is_(True)).distinct()).scalars() if a})
    try:
        from fitboard.worker.weights import cached_weights_path, list_cached
    except ImportError:
        return Check("weights", OK if not archs else WARN,
                     f"not checked without torch (recipes use {', '.join(archs) or 'no pretrained weights'})")
    cached = list_cached()
    holds = "; in the cache: " + (", ".join(f"{c['arch'] or c['file']} ({c['size_bytes'] / 2**20:.0f} MB)"
                                            for c in cached) or "nothing")
    corrupt = [c["file"] for c in cached if c["hash_ok"] is False]
    if corrupt:
        return Check("weights", WARN, f"fail their hash check: {', '.join(corrupt)}" + holds,
                     "delete them and add good copies: `fitboard weights add FILE` or `fitboard weights pull ARCH`")
    missing = []
    for arch in archs:
        try:
            if not cached_weights_path(arch)[0].is_file():
                missing.append(arch)
        except Exception:  # an architecture torchvision does not know (a recipe from a newer version)
            missing.append(arch)
    if missing:
        return Check("weights", WARN, f"not cached: {', '.join(missing)} (of {', '.join(archs)}); pretrained runs "
                     "of those fail at once here" + holds,
                     f"`fitboard weights pull {' '.join(missing)}` (or `fitboard weights add FILE` with a copy)")
    if not archs:
        return Check("weights", OK, "no stored recipe uses pretrained weights" + holds)
    return Check("weights", OK, f"cached for {', '.join(archs)}" + holds)


def _longest_run_seconds(engine: Engine) -> float:
    """The longest wall time of any run so far (a running one counts up to now)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    longest = 0.0
    with engine.connect() as conn:
        for started, finished in conn.execute(select(Run.started_at, Run.finished_at).where(
                Run.started_at.is_not(None))):
            end = finished or now
            longest = max(longest, (end.replace(tzinfo=None) - started.replace(tzinfo=None)).total_seconds())
    return longest


def _visibility(settings: Settings, engine: Engine | None) -> Check:
    """Redis redelivers a task not acked within the visibility timeout: it must outlast the longest run."""
    if not (settings.broker_url or "").startswith(("redis://", "rediss://")):
        return Check("visibility timeout", OK, "no visibility timeout with this broker")
    if engine is None:
        return Check("visibility timeout", WARN, NO_DATABASE)
    longest, timeout = _longest_run_seconds(engine), settings.visibility_timeout
    detail = f"{timeout / 3600:.1f} h; the longest run so far took {longest / 3600:.1f} h"
    fix = f"set FITBOARD_VISIBILITY_TIMEOUT above {int(longest * 2)} s on every host"
    if longest >= timeout:
        return Check("visibility timeout", FAIL, detail + ": runs that long are redelivered while they train", fix)
    if longest * 2 > timeout:
        return Check("visibility timeout", WARN, detail + ": less than twice the longest run", fix)
    return Check("visibility timeout", OK, detail)


def _disk(settings: Settings) -> Check:
    """Free space where this host keeps its database, scratch files and (by default) artifacts."""
    place = settings.home
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    detail = f"{free / 2**30:.1f} GiB free under {settings.home}"
    if free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, detail, "free space or move FITBOARD_HOME: checkpoints and models need room")
    if free < DISK_WARN_BYTES:
        return Check("disk", WARN, detail, "a few large runs' checkpoints may not fit: free space")
    return Check("disk", OK, detail)


def _clock(settings: Settings, engine: Engine | None) -> Check:
    """This host's clock against the database server's: heartbeats and the reaper compare the two."""
    if engine is None:
        return Check("clock", WARN, NO_DATABASE)
    if engine.dialect.name != "postgresql":
        return Check("clock", OK, "SQLite: the database has no clock of its own")
    with engine.connect() as conn:
        before = time.time()
        db_now = conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar()
        after = time.time()
    skew = float(db_now) - (before + after) / 2
    detail = f"{skew:+.2f} s against the database server"
    if abs(skew) > settings.worker_lost_after / 2:
        return Check("clock", FAIL, detail + ": live workers would look lost", "run NTP (chrony) on every host")
    if abs(skew) > SKEW_WARN_SECONDS:
        return Check("clock", WARN, detail, "run NTP (chrony) on every host")
    return Check("clock", OK, detail)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in a fixed order; a check that crashes is reported as a FAIL, not raised."""
    db_check, engine = _database(settings)
    checks: list[Check] = [db_check]
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("broker", lambda: _broker(settings)), ("data root", lambda: _data_root(settings)),
        ("artifact store", lambda: _artifacts(settings)), ("gpus", _gpus), ("weights", lambda: _weights(engine)),
        ("visibility timeout", lambda: _visibility(settings, engine)), ("disk", lambda: _disk(settings)),
        ("clock", lambda: _clock(settings, engine))]
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            checks.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {first_line}"))
    if engine is not None:
        engine.dispose()
    return [redacted(c, settings) for c in checks]


def configured_secrets(settings: Settings) -> list[str]:
    """The credentials in this host's settings, as literal strings (a driver's error may quote them unparsed)."""
    secrets = [settings.api_token or ""]
    for url in (settings.database_url, settings.broker_url, settings.artifact_root, settings.s3_endpoint_url,
                settings.weights_mirror):
        if not url or "://" not in url:
            continue
        info = url.split("://", 1)[1].rpartition("@")[0]
        secrets += info.split(":", 1) if info else []
        for pair in url.partition("?")[2].split("&"):
            name, _, value = pair.partition("=")
            if value and redact(pair) != pair:  # a parameter the redaction rule calls secret
                secrets.append(value)
    return [s for s in secrets if len(s) >= 4]


def redacted(check: Check, settings: Settings) -> Check:
    """The check with every credential in its detail and fix shown as *** (the report is stored and shown)."""
    secrets = configured_secrets(settings)
    return Check(check.name, check.status, redact_secrets(check.detail, secrets), redact_secrets(check.fix, secrets))


def report(checks: list[Check]) -> dict:
    """The JSON report: host, time, counts by status, and every check."""
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    return {"host": socket.gethostname(), "pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(),
            "ok": counts[FAIL] == 0, "counts": counts, "checks": [asdict(c) for c in checks]}


def table(checks: list[Check]) -> str:
    """The report as a plain-text table, each fix on the line under its check."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<4}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<{width}}        fix: {c.fix}")
    return "\n".join(lines)

