"""Which project owns a row: new rows are stamped with it, and a session scoped to a project sees only that project.

The access check (app.web.access) scopes each request's session to the project it resolved; from then on every ORM
query of that session (lists, counts, dataset names, the workers' current runs, bulk updates and deletes) carries
`project_id = :p` on every owned table, and every row it adds lands in that project and names its launcher. Code
outside a request (workers, the reconciler, the search driver) uses unscoped sessions: a run it adds for a sweep or
a search inherits the parent's project and launcher, a prediction its run's project.
"""
from __future__ import annotations

import functools

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, column_property, with_loader_criteria
from sqlalchemy.orm.exc import DetachedInstanceError
from sqlmodel import Session

from fitboard.app.store.models import DEFAULT_PROJECT_ID, Dataset, Prediction, Project, Run, Search, Sweep
from fitboard.app.store.people_models import Person

OWNED = (Run, Sweep, Search, Dataset, Prediction)
LAUNCHED = (Run, Sweep, Search)  # rows that say who launched them
PROJECT_KEY, PERSON_KEY = "fitboard_project", "fitboard_person"

# Read with the run in the same SELECT: every run's JSON says its project and who launched it.
Run.__mapper__.add_property("project_name", column_property(
    select(Project.name).where(Project.id == Run.project_id).correlate_except(Project).scalar_subquery()))
Run.__mapper__.add_property("launcher_name", column_property(
    select(Person.name).where(Person.id == Run.launched_by).correlate_except(Person).scalar_subquery()))


def scope_session(session: Session, project_id: int | None, person_id: int | None) -> None:
    """Make session see only project_id's rows (None: every project) and stamp new rows with it and person_id."""
    session.info[PROJECT_KEY], session.info[PERSON_KEY] = project_id, person_id


def scoped_project(session: Session) -> int | None:
    """The project a session is scoped to, or None."""
    return session.info.get(PROJECT_KEY)


def _parent(session: Session, row):
    """The row a new row inherits its project (and a run its launcher) from: a run's sweep or search, a
    prediction's run; None for a row without one."""
    with session.no_autoflush:
        if isinstance(row, Run) and (row.search_id or row.sweep_id):
            return session.get(Search, row.search_id) if row.search_id else session.get(Sweep, row.sweep_id)
        if isinstance(row, Prediction) and row.run_id:
            return session.get(Run, row.run_id)
    return None


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, _context, _instances) -> None:
    for row in session.new:
        if not isinstance(row, OWNED):
            continue
        parent = _parent(session, row)
        if row.project_id is None:
            row.project_id = getattr(parent, "project_id", None) or session.info.get(PROJECT_KEY) or DEFAULT_PROJECT_ID
        if isinstance(row, LAUNCHED) and row.launched_by is None:
            # The person acting, else (the search driver, a verify sweep) whoever launched the sweep or search.
            row.launched_by = session.info.get(PERSON_KEY) or getattr(parent, "launched_by", None)


@event.listens_for(Session, "after_flush")
def _note_new_runs(session: Session, _context) -> None:
    session.info.setdefault("fitboard_new_runs", []).extend(r for r in session.new if isinstance(r, Run))


@event.listens_for(Session, "after_flush_postexec")
def _load_owner_names(session: Session, _context) -> None:
    # A run answered right after it was added (POST /runs) says its project and launcher even once its session
    # has closed: read both names now, while the session is open.
    for run in session.info.pop("fitboard_new_runs", []):
        session.refresh(run, ["project_name", "launcher_name"])


@event.listens_for(Session, "do_orm_execute")
def _only_this_project(state: ORMExecuteState) -> None:
    project_id = state.session.info.get(PROJECT_KEY)
    if project_id is None or state.is_column_load or state.is_relationship_load:
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(*_criteria(project_id))


@functools.lru_cache(maxsize=1024)
def _criteria(project_id: int) -> tuple:
    """`project_id = :p` on every owned table, built once per project (options are immutable; building five took
    about a tenth of a short list's time, on every query of every request)."""
    # Plain expressions, not lambdas: their bound value keeps the compiled statement cacheable and cheap.
    return tuple(with_loader_criteria(model, model.project_id == project_id, include_aliases=True)
                 for model in OWNED)


def owner_names(run: Run) -> tuple[str, str | None]:
    """The run's project name and its launcher's name (read with the run; loaded now if it was just added)."""
    try:
        return run.project_name or "default", run.launcher_name
    except DetachedInstanceError:  # a run built outside any session (tests' fixtures): only its id is known
        return "default", None
