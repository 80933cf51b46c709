"""The login page: a token form when FITBOARD_API_TOKEN is set, and logout."""
from __future__ import annotations

from fastapi import APIRouter, Request

from app.pages.render import FormData, redirect, render
from app.web.deps import SettingsDep
from app.web.security import token_matches

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
    """Log this browser in when it presents the configured token."""
    target = _safe_next(data.get("next"))
    if not settings.api_token:
        return redirect(target)
    if not token_matches(data.get("token"), settings.api_token):
        return render(request, "login.html", 401, next=target, error="That token is not the configured one.")
    request.session["auth"] = True
    return redirect(target)


@router.post("/logout")
def post_logout(request: Request, settings: SettingsDep, data: FormData):
    """Forget this browser's login."""
    request.session.pop("auth", None)
    return redirect("/login" if settings.api_token else "/")
