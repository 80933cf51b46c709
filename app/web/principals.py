"""Who a caller is: a person (by token or browser session), the site token, or the zero-config local admin.

Directory answers "which principal does this token / this session stand for" from a per-process cache keyed by the
token's digest. Every lookup first reads the access generation (one primary-key SELECT), which every revoke,
disable, password change, grant and new person moves on: a changed generation empties the cache, so a revoked
token gets 401 on its very next request, in every web process. Entries also expire after CACHE_SECONDS.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from sqlmodel import Session

from fitboard.app.core.credentials import looks_like_token, token_digest
from fitboard.app.store import people as store
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import utcnow
from fitboard.app.store.people_models import Person

CACHE_SECONDS = 5.0
TOUCH_EVERY = 60.0  # a token's last_used is written at most this often (a write per request would be a hot spot)
MAX_CACHED = 10_000
WROTE = "fitboard_access_wrote"  # session.info: the check wrote (a token's last use), so it commits before the route
PEOPLE_FRESH = 1.0  # seconds "nobody has an account" is trusted before any request (the header gate, the fast path)
LEVELS = {"viewer": 1, "member": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    """A caller: a name for the audit log, site admin or not, the token's scope, and the person's roles."""

    name: str
    person_id: int | None = None
    site_admin: bool = False
    scope: str = "all"  # all (a session, the site token, the local admin) | read | write | worker
    roles: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))  # project id -> role
    via: str = "local"  # local | site-token | session | token
    token_id: int | None = None

    def level(self, project_id: int) -> int:
        """0 (cannot see it), 1 viewer, 2 member, 3 admin of the project."""
        return 3 if self.site_admin else LEVELS.get(self.roles.get(project_id, ""), 0)


LOCAL_ADMIN = Principal("local admin", site_admin=True, via="local")
SITE_TOKEN = Principal("site token", site_admin=True, via="site-token")


def _person_principal(session: Session, person: Person, **extra) -> Principal:
    roles = MappingProxyType(store.roles_of(session, person.id))
    return Principal(person.name, person.id, person.site_admin, roles=roles, **extra)


class Directory:
    """Cached token and session lookups, checked against the access generation on every call."""

    def __init__(self):
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._tokens: dict[str, tuple[float, Principal | None, object]] = {}  # digest -> (until, who, expires)
        self._sessions: dict[tuple[int, int], tuple[float, Principal | None]] = {}  # (person, version) -> who
        self._touched: dict[int, float] = {}
        self._projects: dict[int, str] | None = None  # every project: id -> name
        self.people_seen: tuple[float, bool] = (0.0, False)  # (when checked, people exist) for the fast path
        self._nobody_at: int | None = None  # a generation at which nobody had an account

    def sync(self, session: Session) -> int:
        """Read the generation; drop every cached principal when it moved. Returns the generation read."""
        current = store.generation(session)
        with self._lock:
            if current != self._generation:
                self._tokens.clear()
                self._sessions.clear()
                self._projects = None
                self._generation = current
        return current

    def projects(self, session: Session) -> dict[int, str]:
        """Every project: id -> name (a new project moves the generation, so this is never stale past a sync)."""
        if self._projects is None:
            self._projects = store.projects(session)
        return self._projects

    def people_exist(self, session: Session, generation: int | None = None) -> bool:
        """True once any person exists (then every caller must identify); remembered for the fast path. generation:
        the one this session read (sync) before asking, so "nobody" read at that generation need not be asked again:
        adding a person moves the generation in the same transaction, and a person is never removed, only disabled."""
        if self.people_seen[1]:
            exist = True
        elif generation is not None and generation == self._nobody_at:
            exist = False
        else:
            exist = store.people_exist(session)
            if not exist and generation is not None:
                self._nobody_at = generation
        self.people_seen = (time.monotonic(), exist)
        return exist

    def people_known(self) -> bool | None:
        """Whether anyone has an account, as last seen: True for good (nobody is ever removed), False only for
        PEOPLE_FRESH seconds (the first person added turns logins on), None when the database must be asked."""
        checked, exist = self.people_seen
        if exist:
            return True
        return False if time.monotonic() - checked < PEOPLE_FRESH else None

    def people_now(self, engine) -> bool:
        """people_exist in a session of its own (for the layers in front of the routes, in a worker thread)."""
        with session_scope(engine) as session:
            return self.people_exist(session)

    def token_holder(self, engine, token: str) -> Principal | None:
        """by_token in a session of its own, after a sync (the header gate, before any route has a session): the
        same cached lookup and generation check as the access check's, so one place decides what a token is."""
        if not looks_like_token(token):
            return None
        with session_scope(engine) as session:
            self.sync(session)
            return self.by_token(session, token)

    def by_token(self, session: Session, token: str) -> Principal | None:
        """The person a token stands for, or None when it is unknown, revoked, expired or its owner disabled."""
        if not looks_like_token(token):
            return None
        digest, now = token_digest(token), time.monotonic()
        hit = self._tokens.get(digest)
        if hit is None or hit[0] < now:
            hit = (now + CACHE_SECONDS, *self._load_token(session, digest))
            with self._lock:
                if len(self._tokens) > MAX_CACHED:
                    self._tokens.clear()
                self._tokens[digest] = hit
        who, expires = hit[1], hit[2]
        if who is None or (expires is not None and expires <= utcnow()):
            return None
        self._touch(session, who.token_id, now)
        return who

    def _load_token(self, session: Session, digest: str) -> tuple[Principal | None, object]:
        found = store.token_by_digest(session, digest)
        if found is None or found[0].revoked_at is not None or found[1].disabled:
            return None, None
        token, person = found
        return _person_principal(session, person, scope=token.scope, via="token", token_id=token.id), token.expires_at

    def _touch(self, session: Session, token_id: int | None, now: float) -> None:
        if token_id is not None and self._touched.get(token_id, -TOUCH_EVERY) < now - TOUCH_EVERY:
            self._touched[token_id] = now
            store.touch_token(session, token_id)
            session.info[WROTE] = True

    def by_session(self, session: Session, person_id: int, version: int) -> Principal | None:
        """The person a browser session stands for, or None once they were disabled or the session was ended."""
        key, now = (person_id, version), time.monotonic()
        hit = self._sessions.get(key)
        if hit is None or hit[0] < now:
            person = session.get(Person, person_id)
            ok = person is not None and not person.disabled and person.session_version == version
            hit = (now + CACHE_SECONDS, _person_principal(session, person, via="session") if ok else None)
            with self._lock:
                if len(self._sessions) > MAX_CACHED:
                    self._sessions.clear()
                self._sessions[key] = hit
        return hit[1]
