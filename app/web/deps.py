"""FastAPI dependencies shared by the API and the pages: the request's session, the settings, the publisher, the
artifact store."""
from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore, store_for
from fitboard.app.core.settings import Settings
from fitboard.app.services.queue import Publisher
from fitboard.app.store.db import session_scope
from fitboard.app.store.ownership import scope_session


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request, committed and closed when the route function returns."""
    with session_scope(request.app.state.engine) as session:
        access = getattr(request.state, "access", None)  # set by the access check, which every route runs first
        if access is not None:
            scope_session(session, access.project_id, access.principal.person_id)
        yield session


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
