"""What every page shares: the Jinja2 environment, render and redirect, the posted form."""
from __future__ import annotations

from typing import Annotated

import jinja2
from fastapi import Depends, Path, Request
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from fitboard.app.core.numbering import where
from fitboard.app.core.progress import progress_eta, progress_text, progress_title
from fitboard.app.core.resources import templates_dir
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.core.status import RunStatus
from fitboard.app.core.variant_words import field_title
from fitboard.app.pages.forms import field_label
from fitboard.app.pages.wording import COLORS, fmt_lr, heat, plural
from fitboard.app.web.security import check_csrf, csrf_token, form_data, logged_in

PageId = Annotated[int, Path(ge=1, le=MAX_ID)]  # a run or sweep id in a page's path: bounded before any query


def _context(request: Request) -> dict:
    """What every page needs: the CSRF token, the login state, who is here and in which project, a one-time notice."""
    access = getattr(request.state, "access", None)
    who = access.principal if access else None
    people_on = request.app.state.directory.people_seen[1]
    return {"csrf": csrf_token(request), "auth_on": bool(request.app.state.settings.api_token) or people_on,
            "authed": who is not None and who.via in ("session", "site-token", "token")
            or (not people_on and logged_in(request)),
            "who": who, "access": access, "notice": request.session.pop("notice", None)}


def _where(position) -> str:
    """A stored position (a dict or a row with stage and epoch), 1-based in words."""
    get = position.get if isinstance(position, dict) else lambda k: getattr(position, k)
    return where(get("stage"), get("epoch"))


env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)
env.globals["RunStatus"] = RunStatus  # templates compare statuses by name, never by a spelled-out string
env.filters.update(lr=fmt_lr, field_label=field_label, heat_cells=heat,
                   swatch=lambda color: f"c{COLORS.index(color) if color in COLORS else 0}",
                   f4=lambda v: "–" if v is None else f"{v:.4f}",
                   pct=lambda v: "–" if v is None else f"{100 * v:.1f}%",
                   where=_where, plural=plural, field_title=field_title,
                   progress_words=progress_text, progress_title=progress_title, progress_eta=progress_eta)
templates = Jinja2Templates(env=env, context_processors=[_context])


def render(request: Request, name: str, status_code: int = 200, **context):
    """A page from templates/, with the shared context."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """See other: after a POST the browser GETs the result, so a reload does not resubmit."""
    return RedirectResponse(url, status_code=303)


async def form_lists(request: Request) -> dict[str, list[str]]:
    """The submitted form fields with every value of a repeated field (ticked boxes), CSRF-checked."""
    form = await request.form()
    data: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            data.setdefault(k, []).append(v)
    check_csrf(request, (data.get("csrf_token") or [None])[-1])
    return data


FormData = Annotated[dict, Depends(form_data)]
FormLists = Annotated[dict, Depends(form_lists)]
