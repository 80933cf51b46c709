"""The one redaction rule for anything that names a location (URLs, DSNs, error texts, log lines, doctor reports):
user names, passwords, query-string secrets and cloud credentials are shown as ***."""
from __future__ import annotations

import logging
import re

MASK = "***"
# scheme://user:password@host -> scheme://***:***@host. The user info ends at the last @ before the path, so a
# password holding an unescaped @ is hidden whole.
# A password may hold / and + (AWS secret keys do): after the user's colon, anything up to the last @ of the word.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)"
                       r"(?P<info>[^\s/?#@'\"<>`]*:[^\s'\"<>`]*|[^\s/?#@'\"<>`]*)@")
# name=value where the name says it is a secret: query strings (?password=, &X-Amz-Signature=), libpq keyword DSNs
# (password=...), Redis/boto error texts. The value ends at the next separator.
_SECRET_WORDS = r"pass(?:word|wd)?|pwd|secret|token|key|keyid|sig|signature|credential|auth|session|apikey"
_PAIR = re.compile(rf"(?P<name>\b[\w.\-]*?(?:{_SECRET_WORDS})[\w.\-]*?\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|"
                   rf"[^\s&#;,'\"<>)\]}}]+)", re.IGNORECASE)
# AWS access key ids and Bearer tokens, wherever they appear
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]+=*")
# A person's API token (app.core.credentials: fbt_ and 43 URL-safe characters) even without its Bearer; the prefix
# people recognise a token by in lists (fbt_ and 6 characters, then "…") is too short to match.
_PERSON_TOKEN = re.compile(r"\bfbt_[A-Za-z0-9_\-]{20,}")


def _userinfo(match: re.Match) -> str:
    return match["scheme"] + (f"{MASK}:{MASK}@" if ":" in match["info"] else f"{MASK}@")


def redact(text) -> str:
    """text with every credential it holds replaced by ***; anything not a str is converted first."""
    text = text if isinstance(text, str) else str(text)
    if not text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    text = _PAIR.sub(lambda m: m["name"] + MASK, text)
    text = _AWS_KEY_ID.sub(MASK, text)
    text = _PERSON_TOKEN.sub("fbt_" + MASK, text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def redact_tree(obj):
    """A JSON-like value with every string in it redacted (a stored doctor report, say)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_tree(v) for v in obj]
    return obj


def redact_secrets(text: str, secrets) -> str:
    """redact(text), then any of the given literal secrets (configured values) still in it replaced too."""
    text = redact(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    """Every log record of the process, its message and traceback redacted when they hold a credential."""
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to the handler's own error report
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean
    return record


def install_log_redaction() -> None:
    """Redact every log line this process writes from now on (idempotent)."""
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)
