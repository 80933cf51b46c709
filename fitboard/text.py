"""Characters a name must not hold, and text made safe for a terminal: no dependencies, so the server, the client
and the CLI share it."""
from __future__ import annotations

import re

# C0 and C1 controls (CR, LF, ESC, tab...), DEL, the bidirectional marks, embeddings, overrides and isolates (a
# U+202E reverses what follows on screen), and the line and paragraph separators.
CONTROLS = "\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[{CONTROLS}]")
# For JSON Schema (ECMA-262) and Python alike: a string without any of them
NO_CONTROLS_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069]*$"


def first_control(text: str) -> str | None:
    """The first control or bidi character in text, as U+XXXX, or None."""
    found = CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def printable(text) -> str:
    """text with every control and bidi character shown as an escape (\\x1b, \\u202e): what a terminal may print."""
    text = text if isinstance(text, str) else str(text)
    return CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


class SafeOutput:
    """A text stream that escapes control and bidi characters on their way to a terminal, except those in `keep`
    (the newlines of the program's own lines): whatever a server sent, the terminal never receives an escape."""

    def __init__(self, stream, keep: str = "\n\t"):
        self.stream, self.keep = stream, keep

    def write(self, text: str) -> int:
        self.stream.write(CONTROL.sub(lambda m: m.group() if m.group() in self.keep else ascii(m.group())[1:-1],
                                      text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)  # flush, isatty, encoding...
