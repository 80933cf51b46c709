"""The login page (a person's name and password, or the site token when no accounts exist), and logout."""
from __future__ import annotations

from fastapi import APIRouter, Request

from fitboard.app.pages.render import FormData, redirect, render
from fitboard.app.services import people
from fitboard.app.store import people as people_store
from fitboard.app.store.people_models import Person
from fitboard.app.web.access import needs
from fitboard.app.web.deps import SessionDep, SettingsDep
from fitboard.app.web.security import client_address, log_in, log_out, token_matches

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


def _mode(request: Request, session) -> str | None:
    """people: accounts exist; token: only FITBOARD_API_TOKEN is set; None: nothing to log in to."""
    if request.app.state.directory.people_exist(session):
        return "people"
    return "token" if request.app.state.settings.api_token else None


@router.get("/login")
@needs("open")
def get_login(request: Request, session: SessionDep, next: str = "/"):
    """The login form (straight to the runs when nothing is configured)."""
    mode = _mode(request, session)
    if mode is None:
        return redirect(_safe_next(next))
    return render(request, "login.html", next=_safe_next(next), error=None, mode=mode)


def _throttled(request: Request, keys: list[tuple[object, str]], target: str, mode: str):
    """The 429 page when the address or the account has failed too often this minute, else None."""
    for throttle, key in keys:
        if (wait := throttle.retry_after(key)) is not None:  # before checking: a right guess must not show either
            response = render(request, "login.html", 429, next=target, mode=mode,
                              error=f"Too many failed logins; try again in {wait} s.")
            response.headers["Retry-After"] = str(wait)
            return response
    return None


@router.post("/login")
@needs("open")
def post_login(request: Request, session: SessionDep, settings: SettingsDep, data: FormData):
    """Log this browser in: a person with their password, or the site token; too many failures per address or per
    account: 429."""
    target, mode = _safe_next(data.get("next")), _mode(request, session)
    if mode is None:
        return redirect(target)
    state, address = request.app.state, client_address(request)
    name = (data.get("name") or "").strip()[:64]
    keys = [(state.auth_throttle, address)] + ([(state.account_throttle, name)] if mode == "people" else [])
    if (refused := _throttled(request, keys, target, mode)) is not None:
        return refused
    if mode == "token":
        if not token_matches(data.get("token"), settings.api_token):
            state.auth_throttle.fail(address)
            return render(request, "login.html", 401, next=target, mode=mode,
                          error="That token is not the configured one.")
        log_in(request)
        return redirect(target)
    who = people.authenticate(session, name, data.get("password") or "")
    if who is None:
        for throttle, key in keys:
            throttle.fail(key)
        return render(request, "login.html", 401, next=target, mode=mode,
                      error="Wrong name or password (or the account is disabled).")
    request.session.pop("project", None)
    request.session["person"], request.session["version"] = who.id, who.session_version
    return redirect(target)


@router.post("/logout")
@needs("open")
def post_logout(request: Request, session: SessionDep, settings: SettingsDep, data: FormData):
    """End this browser's login: a person's every session (copies of the cookie too), or with the site token every
    session signed before (see fitboard.app.web.security.SessionEpoch)."""
    person = request.session.pop("person", None)
    request.session.pop("version", None)
    if isinstance(person, int) and (who := session.get(Person, person)) is not None:
        people_store.end_sessions(session, who)
        return redirect("/login")
    log_out(request)
    return redirect("/login" if settings.api_token or _mode(request, session) else "/")
