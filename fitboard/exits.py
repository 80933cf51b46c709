"""How a script ends, for tracked runs nobody finished: the exception that ended it (caught on its way through
sys.excepthook and threading.excepthook, which then carry on to the hooks they replaced) and, at interpreter exit,
finishing every run still open. Nothing here raises into the user's code."""
from __future__ import annotations

import atexit
import sys
import threading
import time
from typing import Protocol

EXIT_WAIT = 10.0  # seconds the interpreter's exit may wait for all open runs together
MAX_ERROR = 2000  # characters of an exception's message kept as the run's error


class Endable(Protocol):
    def end_at_exit(self, timeout: float) -> None: ...


_open: dict[int, Endable] = {}  # id(run) -> run, in the order they opened
_fatal: dict[int, BaseException] = {}  # thread ident -> the exception that ended that thread
_lock = threading.Lock()
_installed = False


def watch(run: Endable) -> None:
    """Finish `run` at interpreter exit unless it ends before; the hooks go in on the first call."""
    with _lock:
        _open[id(run)] = run
        _install()


def unwatch(run: Endable) -> None:
    """The run ended on its own: nothing to do for it at exit."""
    with _lock:
        _open.pop(id(run), None)


def fatal(thread_ident: int | None) -> BaseException | None:
    """The exception that ended the given thread (the one that trained) or else the main thread, if any."""
    return _fatal.get(thread_ident) or _fatal.get(threading.main_thread().ident)


def last_exception() -> BaseException | None:
    """The last exception the interpreter or IPython showed (sys.last_value): a notebook's interrupted cell."""
    return getattr(sys, "last_value", None)


def outcome(exc: BaseException | None) -> tuple[str, str | None]:
    """(status, error) for a run that ended by exc: cancelled on KeyboardInterrupt, failed with its message on any
    other exception, succeeded on none (or a plain sys.exit())."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "succeeded", None
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", "KeyboardInterrupt: interrupted (Ctrl-C)"
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return "failed", message[:MAX_ERROR]


def _install() -> None:
    """Chain our hooks in front of the current ones, once, and finish open runs at exit."""
    global _installed
    if _installed:
        return
    _installed = True
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def sys_hook(exc_type, exc, tb):
        _note(threading.main_thread().ident, exc)
        previous_sys(exc_type, exc, tb)

    def thread_hook(args):
        _note(getattr(args.thread, "ident", None), args.exc_value)
        previous_thread(args)

    sys.excepthook, threading.excepthook = sys_hook, thread_hook
    atexit.register(_at_exit)


def _note(ident: int | None, exc: BaseException | None) -> None:
    if ident is not None and exc is not None:
        _fatal[ident] = exc


def _at_exit() -> None:
    """Finish every run still open, all within EXIT_WAIT seconds together."""
    deadline = time.monotonic() + EXIT_WAIT
    with _lock:
        runs = list(_open.values())
    for run in runs:
        try:
            run.end_at_exit(max(0.0, deadline - time.monotonic()))
        except Exception:  # the interpreter is exiting: one broken run must not stop the others
            continue
