"""A stop request that a signal handler can make: a plain flag, no lock.

threading.Event.set takes the event's lock, and a signal landing while the main thread held that lock inside
Event.wait left `fitboard predictor` hung for good on SIGTERM. Here set() only sets an attribute and wait() sleeps in
short slices that look at it. The predictor's serve loop and the embedded broker's wait for a message both use it.
"""
from __future__ import annotations

import time

SLICE = 0.1  # seconds: how late a stop request may be noticed


class SignalStop:
    """set() from a signal handler (or anywhere); is_set() and wait(seconds) as threading.Event has them."""

    def __init__(self):
        self.requested = False

    def set(self, *_signal) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, timeout: float) -> bool:
        """Sleep up to timeout seconds, less once a stop is requested; whether one was."""
        end = time.monotonic() + timeout
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(SLICE, left))
        return self.requested
