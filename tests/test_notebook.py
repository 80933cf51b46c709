"""examples/notebook.ipynb top to bottom in a real Jupyter kernel (nbclient + ipykernel) against a real served
fitboard (web, worker, predictor): what its cells show is what the API holds."""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import fitboard
from fitboard.app.core.demo_data import write_digits
from tests.conftest import TINY_IMAGES
from tests.served import serving

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def _html_outputs(cell) -> str:
    return "\n".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


def test_example_notebook_runs_against_a_served_fitboard(tmp_path, monkeypatch):
    home = tmp_path / "home"
    write_digits(home / "datasets" / "digits", limit=TINY_IMAGES)
    with serving(home) as server:
        # The kernel inherits the environment: the client finds the server, the callback the data.
        monkeypatch.setenv("FITBOARD_URL", server.url)
        monkeypatch.setenv("FITBOARD_DATA_ROOT", str(home / "datasets"))
        monkeypatch.delenv("FITBOARD_API_TOKEN", raising=False)
        monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any failing cell
        runs = {r["name"]: r for r in fitboard.Client(server.url).runs()}
    assert {n: (r["kind"], r["status"]) for n, r in runs.items()} == {
        "demo-plain": ("queued", "succeeded"), "demo-label-smoothing": ("queued", "succeeded"),
        "notebook-squeezenet": ("tracked", "succeeded")}
    # The live cell of follow() ended showing the run's stored epoch row and its final status.
    follow = next(c for c in nb.cells if c.cell_type == "code" and "plain.follow()" in c.source)
    shown = _html_outputs(follow)
    plain = runs["demo-plain"]
    assert "succeeded" in shown and f"{plain['best_accuracy']:.4f}" in shown
    # The compare cell's table holds both runs' stored accuracies.
    compare = next(c for c in nb.cells if c.cell_type == "code" and "compare([plain.id, tracked.id])" in c.source)
    table = _table(_html_outputs(compare))
    for run in (plain, runs["notebook-squeezenet"]):
        assert float(table[str(run["id"])]["accuracy"]) == pytest.approx(run["best_accuracy"], abs=1e-6)


def _table(html: str) -> dict[str, dict[str, str]]:
    """A DataFrame's HTML as {index: {column: cell text}}."""
    rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]
    header = rows[0]
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows[1:] if len(r) == len(header)}
