"""fitboard users / projects / tokens: accounts, projects, roles and API tokens, on the server's database."""
from __future__ import annotations

import argparse
import getpass
import sys

from fitboard.app.core.errors import FitboardError
from fitboard.app.services import people
from fitboard.app.store import people as store
from fitboard.app.store.db import session_scope
from fitboard.app.store.people_models import ROLES, SCOPES
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, settings_from, store_engine

MAX_STDIN_PASSWORD = 1024


def _actor() -> str:
    """Who the audit log names for a command run on the server host."""
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"


def _run(args: argparse.Namespace, action) -> int:
    """Run action(session) in one transaction; a refused input prints its reason and exits 2 (missing: 1)."""
    engine = store_engine(settings_from(args))
    try:
        with session_scope(engine) as session:
            action(session)
        return EXIT_OK
    except FitboardError as exc:
        print(f"fitboard: {exc}", file=sys.stderr)
        return EXIT_INVALID if exc.status_code in (409, 422) else EXIT_FAILED
    finally:
        engine.dispose()


def accounts_on(settings) -> bool:
    """True once anyone has an account: then every caller must log in, and the server may face a network."""
    engine = store_engine(settings)
    try:
        with session_scope(engine) as session:
            return store.people_exist(session)
    finally:
        engine.dispose()


def _audit(session, action: str, target: str) -> None:
    store.record(session, _actor(), None, action, target, None, "local")


def cmd_users_add(args: argparse.Namespace) -> int:
    """Add a person; the password comes on stdin (never on the command line, where `ps` shows it)."""
    if not args.password_stdin:
        print("fitboard: give the password on stdin with --password-stdin", file=sys.stderr)
        return EXIT_INVALID
    password = sys.stdin.read(MAX_STDIN_PASSWORD + 2).rstrip("\r\n")

    def add(session):
        people.add_person(session, args.name, password, site_admin=args.admin)
        _audit(session, "person.add", f"person {args.name}" + (" (site admin)" if args.admin else ""))
        print(f"added {args.name}" + (" (site admin)" if args.admin else ""))
    return _run(args, add)


def cmd_users_disable(args: argparse.Namespace) -> int:
    """Disable (or enable) a person: their sessions and tokens stop at once."""
    def disable(session):
        people.set_disabled(session, args.name, not args.enable)
        _audit(session, "person.enable" if args.enable else "person.disable", f"person {args.name}")
        print(f"{args.name} {'enabled' if args.enable else 'disabled'}")
    return _run(args, disable)


def cmd_users_list(args: argparse.Namespace) -> int:
    """Every person, with their projects and roles."""
    def show(session):
        names = store.projects(session)
        for p in store.list_people(session):
            roles = ", ".join(f"{names[i]}:{r}" for i, r in sorted(store.roles_of(session, p.id).items()))
            flags = " ".join(f for f, on in (("site-admin", p.site_admin), ("disabled", p.disabled)) if on)
            print(f"{p.name}\t{flags or '-'}\t{roles or '-'}")
    return _run(args, show)


def cmd_projects_add(args: argparse.Namespace) -> int:
    """Add a project."""
    def add(session):
        people.add_project(session, args.name)
        _audit(session, "project.create", f"project {args.name}")
        print(f"added project {args.name}")
    return _run(args, add)


def cmd_projects_grant(args: argparse.Namespace) -> int:
    """Give a person a role in a project (none: remove them)."""
    def grant(session):
        role = None if args.role == "none" else args.role
        project, _ = people.grant(session, args.project, args.user, role)
        store.record(session, _actor(), None, "grant", f"{args.user} as {args.role} in {args.project}", project.id,
                     "local")
        print(f"{args.user} is {args.role} of {args.project}" if role else f"{args.user} removed from {args.project}")
    return _run(args, grant)


def cmd_projects_list(args: argparse.Namespace) -> int:
    """Every project with its people."""
    def show(session):
        for pid, name in store.projects(session).items():
            print(f"{name}\t" + (", ".join(f"{n}:{r}" for n, r in store.members(session, pid)) or "-"))
    return _run(args, show)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    """Create a token for a person; the token alone is the last line of stdout (shown this once)."""
    def create(session):
        owner = people.person(session, args.user)
        token, row = people.create_token(session, owner, args.name or "", args.scope, args.expires)
        _audit(session, "token.create", f"token {row.prefix}… ({row.scope}) of {owner.name}")
        print(f"token for {owner.name} ({row.scope}" + (f", expires in {args.expires} days" if args.expires else "")
              + "); it is shown this once:")
        print(token)
    return _run(args, create)


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    """Revoke a token given the token itself."""
    def revoke(session):
        row = people.revoke_token(session, token=args.token.strip())
        _audit(session, "token.revoke", f"token {row.prefix}…")
        print(f"revoked {row.prefix}…")
    return _run(args, revoke)


def cmd_tokens_list(args: argparse.Namespace) -> int:
    """A person's tokens: prefix, label, scope, created, last used, expiry, revoked."""
    def show(session):
        for t in people.tokens(session, people.person(session, args.user)):
            when = [t.created_at, t.last_used_at, t.expires_at, t.revoked_at]
            cells = [f"{t.prefix}…", t.label or "-", t.scope] + [w.isoformat(timespec="seconds") if w else "-"
                                                                  for w in when]
            print("\t".join(cells))
    return _run(args, show)


def _group(sub, name: str, text: str, commands) -> None:
    """A command group: each (action, help, func, [(flags, add_argument's keywords)]) one of its subcommands."""
    group = sub.add_parser(name, help=text).add_subparsers(dest="action", required=True)
    for action, help_text, func, arguments in commands:
        p = group.add_parser(action, help=help_text)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(func=func)


NAME = (("name",), {})
USERS = (
    ("add", "add a person (the first one turns logins on)", cmd_users_add, [
        NAME, (("--admin",), {"action": "store_true", "help": "a site admin: manages people and sees every project"}),
        (("--password-stdin",), {"action": "store_true", "help": "read the password from stdin"})]),
    ("disable", "disable a person: their sessions and tokens stop at once", cmd_users_disable, [
        NAME, (("--enable",), {"action": "store_true", "help": "enable them again instead"})]),
    ("list", "every person and their roles", cmd_users_list, []),
)
PROJECTS = (
    ("add", "add a project", cmd_projects_add, [NAME]),
    ("grant", "give a person a role in a project", cmd_projects_grant, [
        (("project",), {}), (("user",), {}), (("role",), {"choices": [*ROLES, "none"]})]),
    ("list", "every project and its people", cmd_projects_list, []),
)
TOKENS = (
    ("create", "create a token; the token alone is the last line of stdout", cmd_tokens_create, [
        (("user",), {}), (("--name",), {"help": "a label to recognise it by"}),
        (("--scope",), {"choices": SCOPES, "default": "write",
                        "help": "read: only reads; write: what the person's roles allow; worker: report training "
                                "only"}),
        (("--expires",), {"type": int, "metavar": "DAYS", "help": "expire after DAYS days (default: never)"})]),
    ("revoke", "revoke a token: its next request gets 401", cmd_tokens_revoke, [(("token",), {})]),
    ("list", "a person's tokens", cmd_tokens_list, [(("user",), {})]),
)


def add_commands(sub) -> None:
    """users, projects and tokens."""
    _group(sub, "users", "people's accounts", USERS)
    _group(sub, "projects", "projects and roles", PROJECTS)
    _group(sub, "tokens", "people's API tokens", TOKENS)
