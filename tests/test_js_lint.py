"""The JavaScript gate: ESLint (pinned by package-lock.json, installed by `make lint`) passes on app/static and
refuses a statement swallowed by a // comment, an unused value and an unused variable."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ESLINT = ROOT / "node_modules" / ".bin" / "eslint"


@pytest.fixture(scope="module")
def eslint():
    """Runs ESLint with the project's config on source text as if it were app/static/<name>; returns its messages."""
    if shutil.which("node") is None or not ESLINT.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("ESLint is not installed and CI=true requires it (make lint runs npm ci)")
        pytest.skip("ESLint is not installed: `make lint` installs it with npm ci")

    def lint(source: str, name: str = "probe.js") -> list[dict]:
        out = subprocess.run([str(ESLINT), "--format", "json", "--stdin", "--stdin-filename", f"app/static/{name}"],
                             input=source, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode in (0, 1), out.stderr
        return json.loads(out.stdout)[0]["messages"]

    return lint


def rules(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["ruleId"], m["line"]) for m in messages]


def test_every_static_script_passes(eslint):
    for path in sorted((ROOT / "app" / "static").glob("*.js")):
        assert eslint(path.read_text(), path.name) == [], path.name


# run.js's addRow as it was: the comment after the first cell swallowed the train_loss and valid_loss cells.
SWALLOWED = '''"use strict";
(() => {
  const f4 = (v) => Number(v).toFixed(4);
  function cell(tag, text) { const el = document.createElement(tag); el.textContent = text; return el; }
  window.addRow = (tr, e, n) => {
    tr.append(cell("td", String(n)),  // counted over all stages cell("td", f4(e.train_loss)), cell("td", f4(e.loss)),
      cell("td", f4(e.accuracy)));
  };
})();
'''


def test_a_comment_that_swallowed_code_fails(eslint):
    assert rules(eslint(SWALLOWED)) == [("fitboard/no-swallowed-code", 6)]
    fixed = SWALLOWED.replace("  // counted over all stages", "")
    assert eslint(fixed) == []


def test_unused_values_and_variables_fail(eslint):
    source = '''"use strict";
(() => {
  const unused = 3;
  const el = document.body;
  el.hidden;
  el.title === "x";
  window.f = (a, b) => a;
})();
'''
    assert rules(eslint(source)) == [("no-unused-vars", 3), ("no-unused-expressions", 5),
                                     ("no-unused-expressions", 6), ("no-unused-vars", 7)]


def test_prose_comments_that_mention_calls_pass(eslint):
    source = '''"use strict";
// Plotly.react(el, traces) redraws in place, unlike newPlot.
// from fitboard.app.core.status, via the page
// "stage s of S · epoch e of E": stored positions are 0-based, people count from 1.
// EventSource sends Last-Event-ID itself on reconnects (see connect()).
window.x = 1;  // as the server's secs() macro writes them
'''
    assert eslint(source) == []
