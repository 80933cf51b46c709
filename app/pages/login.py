"""The login page: a token form when FITBOARD_API_TOKEN is set, and logout."""
from __future__ import annotations

from fastapi import APIRouter, Request

from fitboard.app.pages.render import FormData, redirect, render
from fitboard.app.web.deps import SettingsDep
from fitboard.app.web.security import client_address, log_in, log_out, token_matches

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
def get_login(request: Request, settings: SettingsDep, next: str = "/"):
    """The token form (straight to the runs when no token is configured)."""
    if not settings.api_token:
        return redirect(_safe_next(next))
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def post_login(request: Request, settings: SettingsDep, data: FormData):
    """Log this browser in when it presents the configured token; too many wrong tokens from one address: 429."""
    target = _safe_next(data.get("next"))
    if not settings.api_token:
        return redirect(target)
    throttle, address = request.app.state.auth_throttle, client_address(request)
    if (wait := throttle.retry_after(address)) is not None:  # before comparing: a right guess must not show either
        response = render(request, "login.html", 429, next=target,
                          error=f"Too many wrong tokens from this address; try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    if not token_matches(data.get("token"), settings.api_token):
        throttle.fail(address)
        return render(request, "login.html", 401, next=target, error="That token is not the configured one.")
    log_in(request)
    return redirect(target)


@router.post("/logout")
def post_logout(request: Request, settings: SettingsDep, data: FormData):
    """End this browser's login, and every other session signed before (see fitboard.app.web.security.SessionEpoch)."""
    log_out(request)
    return redirect("/login" if settings.api_token else "/")
