"""FastAPI dependencies shared by the API and the pages."""
from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlmodel import Session

from app.db import session_scope
from app.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request, committed when the route returns."""
    with session_scope(request.app.state.engine) as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    """The web process's settings."""
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
