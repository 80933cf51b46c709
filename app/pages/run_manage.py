"""Tidying runs from the pages: rename, notes, tags, archive and delete, one run or the ticked ones in the list."""
from __future__ import annotations

from fastapi import APIRouter, Request

from fitboard.app.core.errors import NotFound, RecipeError, RunLive
from fitboard.app.core.run_meta import parse_patch, parse_tags
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.pages.render import FormData, FormLists, PageId, redirect
from fitboard.app.pages.runs import run_page
from fitboard.app.services import runs
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = APIRouter()
MAX_PICKED = 200  # ticked runs in one list action: a page holds at most 200


def _ids(values: list[str]) -> list[int]:
    """The ticked run ids that are ids at all (a tampered form loses the rest), in order, at most MAX_PICKED."""
    ids = [int(v) for v in values if v.isdecimal() and 1 <= int(v) <= MAX_ID]
    return list(dict.fromkeys(ids))[:MAX_PICKED]


@router.post("/runs/{run_id}/edit")
@needs("member")
def post_run_edit(request: Request, session: SessionDep, run_id: PageId, data: FormData):
    """Save a run's name, tags and notes from its page."""
    fields = {"name": data.get("name", ""), "notes": data.get("notes", ""), "tags": parse_tags(data.get("tags", ""))}
    try:
        runs.edit(session, run_id, parse_patch(fields))
    except RecipeError as exc:
        session.rollback()
        return run_page(request, session, run_id, f"Not saved: {exc}", 422)
    request.app.state.run_cache.invalidate(run_id)
    request.session["notice"] = "Saved."
    return redirect(f"/runs/{run_id}")


@router.post("/runs/{run_id}/archive")
@needs("member")
def post_run_archive(request: Request, access: AccessDep, session: SessionDep, run_id: PageId, data: FormData):
    """Archive a run (hidden from the list) or bring it back."""
    archived = data.get("archived") != "0"
    runs.edit(session, run_id, parse_patch({"archived": archived}))
    request.app.state.run_cache.invalidate(run_id)
    access.note("archive" if archived else "unarchive", f"run {run_id}")
    request.session["notice"] = (f"Run {run_id} archived: the runs list hides it unless you tick “show archived”."
                                 if archived else f"Run {run_id} is back in the runs list.")
    return redirect(f"/runs/{run_id}")


@router.post("/runs/{run_id}/delete")
@needs("admin")
def post_run_delete(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep, run_id: PageId,
                    data: FormData):
    """Delete a finished run with its rows and files."""
    try:
        runs.delete(session, settings, run_id)
    except RunLive as exc:
        session.rollback()
        return run_page(request, session, run_id, str(exc), 409)
    request.app.state.run_cache.invalidate(run_id)
    access.note("delete", f"run {run_id}")
    request.session["notice"] = f"Run {run_id} deleted."
    return redirect("/runs")


@router.post("/runs/bulk")
@needs("member")
def post_runs_bulk(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep, data: FormLists):
    """Archive, unarchive or delete the runs ticked in the list; says what was done and what was refused."""
    action = (data.get("action") or [""])[-1]
    ids = _ids(data.get("ids", []))
    back = (data.get("back") or ["/runs"])[-1]
    back = back if back.startswith("/runs") and not back.startswith("//") else "/runs"
    done, refused = [], []
    if action == "delete":
        access.require("admin")  # the action comes with the form: archiving needs member, deleting admin
    for run_id in ids:
        try:
            if action == "delete":
                runs.delete(session, settings, run_id)
            elif action in ("archive", "unarchive"):
                runs.edit(session, run_id, parse_patch({"archived": action == "archive"}))
            else:
                break
            done.append(run_id)
            access.note(action, f"run {run_id}")
        except (RunLive, NotFound) as exc:
            session.rollback()
            refused.append(str(exc))
        request.app.state.run_cache.invalidate(run_id)
    verb = {"delete": "Deleted", "archive": "Archived", "unarchive": "Unarchived"}.get(action)
    if verb is None or not ids:
        request.session["notice"] = "Tick one or more runs first." if verb else "Unknown action."
    else:
        request.session["notice"] = " ".join(
            ([f"{verb} {_listed(done)}."] if done else []) + ([f"Not done: {'; '.join(refused)}."] if refused else []))
    return redirect(back)


def _listed(ids: list[int]) -> str:
    """'run 3' or 'runs 3, 5, 8'."""
    return f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(map(str, ids))
