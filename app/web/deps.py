"""FastAPI dependencies shared by the API and the pages: the request's session, the settings, the publisher, the
artifact store."""
from __future__ import annotations

import functools
from typing import Annotated, AsyncIterator, Callable

import anyio.to_thread
from anyio import CancelScope, CapacityLimiter
from fastapi import Depends, Request
from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore, store_for
from fitboard.app.core.settings import Settings
from fitboard.app.services.queue import Publisher
from fitboard.app.store.db import session_scope
from fitboard.app.store.ownership import scope_session


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One database session per request (session_scope's), committed (rolled back if the route raised) and closed in
    a worker thread when the route function returns."""
    # Async: opening a session touches no database (it connects at its first query), so only its end needs a worker
    # thread; as a sync generator dependency each end took a trip through the thread pool.
    handed = getattr(request.state, "handed_session", None)  # the access check's session, already connected
    if handed is not None:
        request.state.handed_session = None
        scope, session = handed
    else:
        scope = session_scope(request.app.state.engine)
        session = scope.__enter__()
    access = getattr(request.state, "access", None)  # set by the access check, which every route runs first
    if access is not None:
        scope_session(session, access.project_id, access.principal.person_id)
    try:
        yield session
    except BaseException as exc:
        await on_the_way_out(scope.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await on_the_way_out(scope.__exit__, None, None, None)


async def on_the_way_out(fn: Callable[..., object], *args) -> None:
    """Run a dependency's closing step in a worker thread, as FastAPI runs a sync dependency's: shielded from the
    request's cancellation (a client gone mid-answer still gets its session closed) and outside the thread pool's
    capacity (a closing step that waited for a thread held by requests waiting for its connection would deadlock)."""
    with CancelScope(shield=True):
        await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=CapacityLimiter(1))


def get_settings_dep(request: Request) -> Settings:
    """The web process's settings."""
    return request.app.state.settings


def get_publisher(request: Request) -> Publisher:
    """Where submitted runs are published for the workers."""
    return request.app.state.publisher


def get_artifacts(request: Request) -> ArtifactStore:
    """The artifact store every host shares (models, predictions)."""
    return store_for(request.app.state.settings)


# scope="function": the session commits and gives its connection back as soon as the route function returns, before
# the answer is validated and serialised in another worker thread. Held until the answer was sent (the default), a
# burst of requests could hold every connection while waiting for a thread held by requests waiting for a
# connection: a deadlock.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
