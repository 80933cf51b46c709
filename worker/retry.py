"""The worker's retries, through tenacity: exponential backoff from half a second, capped at
Settings.retry_backoff_max, until a time limit would pass or the worker is stopping."""
from __future__ import annotations

import logging
import threading

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_any,
    stop_before_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential,
)

FIRST_WAIT = 0.5  # seconds before the second try; each later wait doubles, up to the cap


def retrying(what: str, log: logging.Logger, *, on: type[BaseException] | tuple, backoff_max: float,
             seconds: float | None = None, stopping: threading.Event | None = None) -> Retrying:
    """A tenacity Retrying of the `on` exceptions: no try starts past `seconds` (None: no limit), and none once
    `stopping` is set; then the last exception is raised as it was. Each retry is logged, naming `what`."""
    stops = [stop_before_delay(seconds)] if seconds is not None else []
    if stopping is not None:
        stops.append(stop_when_event_set(stopping))

    def warn(state) -> None:
        log.warning("%s failed (%s); retrying in %.1f s", what, state.outcome.exception(), state.upcoming_sleep)

    return Retrying(retry=retry_if_exception_type(on), stop=stop_any(*stops) if stops else stop_never,
                    before_sleep=warn, reraise=True, wait=wait_exponential(multiplier=FIRST_WAIT, max=backoff_max))
