"""One numbering convention (stored 0-based, shown 1-based) and the whole-run ETA, as people read them."""
from __future__ import annotations

import io
import re

import pytest

from fitboard.app.core.events import EpochEvent, ProgressEvent, ResultEvent
from fitboard.app.core.numbering import progress_words, run_eta, where
from fitboard.app.store.db import session_scope
from fitboard.app.store.runs import record_progress
from fitboard.worker.reporters import ConsoleReporter, result_summary
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_pages import add_run, client, engine, make_client  # noqa: F401  (a TestClient on its own database)

PLAN = [(2, 32), (3, 64)]  # two stages: 2 epochs at 32 px, then 3 at 64 px


def test_positions_are_shown_one_based():
    assert where(1, 2) == "stage 2 · epoch 3"
    assert progress_words(0, 2, 1, 3, 4, 10) == "stage 1 of 2 · epoch 2 of 3 · batch 4 of 10"
    assert progress_words(0, None, 0, None, 4, 10) == "stage 1 · epoch 1 · batch 4 of 10"


def test_run_eta_covers_every_epoch_left_not_just_this_one():
    # Halfway through the first epoch at 1 s a batch of 10: 5 s left in it, one more 10 s epoch in this stage,
    # then 3 epochs at 4x the pixels; 3 validation batches at a third of a step each (1 s) after every epoch.
    assert run_eta(PLAN, 0, 0, 5, 10, 5.0, timed=[]) == pytest.approx(5 + 10 + 3 * 40)
    assert run_eta(PLAN, 0, 0, 5, 10, 5.0, timed=[], valid_batches=3) == pytest.approx(5 + 1 + 11 + 3 * 44)
    # Once an epoch is timed (12 s: 10 of training, 1.5 of validation, 0.5 beside), the estimate uses it: the
    # validation scales with the image area, what is beside does not.
    timed = [(0, 12.0, 10.0, 1.5)]
    assert run_eta(PLAN, 0, 1, 5, 10, 5.0, timed=timed) == pytest.approx(5 + 2 + 3 * (40 + 6 + 0.5))
    # In the last stage it is re-estimated from that stage's own epochs; its last batch leaves its validation and
    # the final passes (scoring and TTA), each a validation pass.
    timed = [(0, 12.0, 10.0, 1.5), (0, 12.0, 10.0, 1.5), (1, 30.0, 27.0, 2.5), (1, 30.0, 27.0, 2.5)]
    assert run_eta(PLAN, 1, 2, 10, 10, 30.0, timed=timed) == pytest.approx(3)
    assert run_eta(PLAN, 1, 2, 10, 10, 30.0, timed=timed, final_passes=3) == pytest.approx(3 + 3 * 2.5)
    assert run_eta(PLAN, 5, 0, 1, 10, 1.0, timed=[]) is None  # a stage outside the plan: unknown, not a guess


def test_console_table_and_summary_are_one_based_and_no_control_codes_off_a_terminal():
    out, bar = io.StringIO(), io.StringIO()
    console = ConsoleReporter(out=out, bar=bar)  # StringIO is not a terminal
    console.emit(ProgressEvent(stage=1, epoch=0, batch=3, total=8, elapsed=1.0, eta=2.0, stage_count=2,
                               epoch_count=3, run_eta=40.0))
    console.emit(EpochEvent(stage=1, epoch=0, train_loss=0.5, valid_loss=0.4, metrics={"accuracy": 0.9}, seconds=2.0))
    assert bar.getvalue() == "" and "\r" not in out.getvalue() and "\033" not in out.getvalue()
    assert out.getvalue().splitlines()[1].split()[:2] == ["2", "1"]
    tty_bar = io.StringIO()
    ConsoleReporter(out=io.StringIO(), bar=tty_bar, tty=True).emit(ProgressEvent(
        stage=1, epoch=0, batch=3, total=8, elapsed=1.0, eta=2.0, stage_count=2, epoch_count=3, run_eta=40.0))
    assert "stage 2 of 2 · epoch 1 of 3 · batch 3 of 8" in tty_bar.getvalue() and "run ETA 40s" in tty_bar.getvalue()
    summary = result_summary(ResultEvent(metrics={"valid_loss": 0.1, "accuracy": 0.9, "error_rate": 0.1},
                                         best={"stage": 1, "epoch": 2, "metric": "accuracy", "value": 0.9}))
    assert "at stage 2 · epoch 3" in summary


def test_run_page_counts_epochs_over_all_stages_and_shows_the_whole_run_eta(client):  # noqa: F811
    run_id = add_run(client, "running")  # stage 1: 2 epochs, stage 2: 1 epoch so far
    with session_scope(engine(client)) as s:
        record_progress(s, run_id, {"stages": [], "notes": [], "batch": {
            "stage": 1, "epoch": 1, "batch": 3, "total": 4, "elapsed": 2.0, "eta": 0.7, "smooth_loss": 0.61,
            "stage_count": 2, "epoch_count": 2, "run_eta": 125.0}})
    page = client.get(f"/runs/{run_id}").text
    assert "stage 2 of 2 · epoch 2 of 2 · batch 3 of 4" in page and "ETA 2 min 5 s for the whole run" in page
    cells = re.findall(r'<tr data-stage="\d" title="([^"]+)"[^>]*>\s*<td class="num">(\d+)', page)
    assert cells == [("stage 1 · epoch 1", "1"), ("stage 1 · epoch 2", "2"), ("stage 2 · epoch 1", "3")]
    csv_lines = client.get(f"/api/v1/runs/{run_id}/epochs?format=csv").text.splitlines()[1:]
    assert [line.split(",")[:2] for line in csv_lines] == [["1", "1"], ["1", "2"], ["2", "1"]]
