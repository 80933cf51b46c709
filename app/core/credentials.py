"""Passwords (argon2id hashes) and person API tokens (random, kept as SHA-256 digests), and the names people pick."""
from __future__ import annotations

import functools
import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fitboard.app.core.errors import RecipeError

TOKEN_PREFIX = "fbt_"  # tells a person's token from the legacy FITBOARD_API_TOKEN at a glance (and to scanners)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a bound keeps a login request cheap to refuse
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """A hash of nothing, verified when the account does not exist, so a wrong name takes as long as a wrong password.
    Made on first use, not on import: an argon2 hash costs 0.2-0.3 s of CPU, paid by every process that imports the
    web app (each CLI command, worker and server) though few of them ever check a password; create_app makes it."""
    return _hasher.hash("fitboard: no such account")


def prepare_dummy() -> None:
    """Make the dummy hash now (the web app, at start), so that even a process's first login to an unknown name
    takes no longer than a wrong password."""
    _dummy()


def check_name(name: str, field: str = "name") -> str:
    """A person's or project's name: 1-64 lower-case letters, digits, '_', '.', '-'; RecipeError otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RecipeError.one(field, "1-64 characters: lower-case letters, digits, '_', '.' or '-', starting with a "
                                     "letter or digit")
    return name


def check_password(password: str, field: str = "password") -> str:
    """A new password: 8 to 1024 characters."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise RecipeError.one(field, f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of a password (salted; the only form a password is kept in)."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when password matches the stored hash; a missing account costs the same time as a wrong password."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (a token is 256 random bits, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh token, its digest and its display prefix (the first characters, to recognise it in a list)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token), token[:len(TOKEN_PREFIX) + 6]


def looks_like_token(value: str) -> bool:
    """True for a string shaped like a person's token (cheap test before any lookup)."""
    return value.startswith(TOKEN_PREFIX) and 20 < len(value) < 100
