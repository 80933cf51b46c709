"""Scripts that train with FitboardCallback and end every way a script ends, each a real Python process against a
served fitboard: kill -9, an exit without finish(), an exception after training (in the main thread, or in the
thread that trained), Ctrl-C during a fit, and the scoped form. Every epoch row the script's recorder logged is on
the dashboard, and the run ends in the status the script ended in (a killed one as lost, after
FITBOARD_TRACKED_LOST_AFTER)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import fitboard
from fitboard.exits import EXIT_WAIT
from fitboard.tracker import Tracker
from tests.served import free_port, serving

SCRIPT = textwrap.dedent('''
    import atexit, json, signal, sys, threading, time
    import fastai.callback.schedule  # noqa: F401  (fit_one_cycle)
    from fastai.callback.core import Callback
    from fastai.callback.progress import ProgressCallback
    from fastai.metrics import mae
    from fastai.test_utils import synth_learner
    from fitboard.fastai import FitboardCallback

    url, ending = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if our parent ignores SIGINT

    reported = []
    # Registered before the callback's own exit handler, so it runs after it (atexit runs last-in first-out).
    atexit.register(lambda: reported and print(f"exit waited {time.monotonic() - reported[0]:.2f} s", flush=True))

    def report(learn, cb, **more):
        """What the recorder logged, for the test to compare with the dashboard."""
        if cb.run_id is None:  # the background sender opens the run: on a loaded machine, maybe not yet
            cb.tracker.flush(60)
        rows = [[float(x) for x in row] for row in learn.recorder.values]
        print(json.dumps({"run": cb.run_id, "rows": rows, **more}), flush=True)
        reported.append(time.monotonic())

    class PauseAfterSecondEpoch(Callback):
        order = FitboardCallback.order + 1  # after the recorder and the tracker took the epoch

        def after_epoch(self):
            if self.epoch == 1:
                report(self.learn, cb)
                time.sleep(600)  # Ctrl-C arrives here, in the middle of the fit

    def plain():  # the endings exit, raise and kill
        learn.fit_one_cycle(2, 1e-3, cbs=cb)
        report(learn, cb)

    def interrupt():
        learn.fit_one_cycle(3, 1e-3, cbs=[cb, PauseAfterSecondEpoch()])

    def scoped():
        try:
            with cb:
                learn.fit_one_cycle(2, 1e-3, cbs=cb)
                raise RuntimeError("scoring went wrong")
        except RuntimeError:
            pass
        import fitboard
        run = fitboard.Client(url).run(cb.run_id)  # what the dashboard says once the block is left
        report(learn, cb, status=run.status, error=run["error"])

    def thread():
        def train():
            plain()
            raise OSError("disk full while saving")
        worker = threading.Thread(target=train)
        worker.start()
        worker.join()

    learn = synth_learner(n_trn=8, n_val=4, metrics=[mae])
    learn.remove_cb(ProgressCallback)
    cb = FitboardCallback(url, name=f"script-{ending}", verbose=True)
    with learn.no_logging():
        {"interrupt": interrupt, "scoped": scoped, "thread": thread}.get(ending, plain)()
    if ending == "raise":
        raise ValueError("labels.csv lacks 3 rows")
    if ending == "kill":
        time.sleep(600)
''')


class Script:
    """The script above, started for one ending; a thread collects what it prints, its report is the JSON line."""

    def __init__(self, folder, url: str, ending: str):
        path = folder / f"train_{ending}.py"
        path.write_text(SCRIPT)
        # One thread each: several scripts share two cores with the server, and torch's spinning threads would
        # make a two-epoch fit take minutes.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(path), url, ending], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.said: list[str] = []
        self.reader = threading.Thread(target=lambda: self.said.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def report(self, timeout: float = 180) -> dict:
        """The JSON line: the run's id and what the recorder logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = next((x for x in list(self.said) if x.startswith("{")), None)
            if line:
                return json.loads(line)
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError("the script reported nothing:\n" + self.output())

    def wait(self, timeout: float = 60) -> int:
        """Its exit code, once it exited and everything it said was read."""
        self.proc.wait(timeout)
        self.reader.join(10)
        return self.proc.returncode

    def output(self) -> str:
        return "".join(self.said)

    def stop(self) -> None:
        """Kill it if a failed test left it sleeping."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`fitboard web` alone: a tracked run needs no worker."""
    with serving(tmp_path_factory.mktemp("tracked-exit"), command="web") as server:
        yield server


@pytest.fixture(scope="module")
def forgetful(tmp_path_factory):
    """`fitboard web` that fails a tracked run as lost after 10 s of silence (not less: a script starved of CPU
    by its neighbours may be silent for seconds while it trains), checking twice a second."""
    env = {"FITBOARD_TRACKED_LOST_AFTER": "10", "FITBOARD_RECONCILE_INTERVAL": "0.5"}
    with serving(tmp_path_factory.mktemp("tracked-lost"), command="web", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def scripts(served, forgetful, tmp_path_factory):
    """One script per ending, started together (most of each one's time is importing torch and fastai)."""
    folder = tmp_path_factory.mktemp("scripts")
    started = {ending: Script(folder, served.url, ending) for ending in ("exit", "raise", "interrupt", "scoped",
                                                                          "thread")}
    started["kill"] = Script(folder, forgetful.url, "kill")
    yield started
    for script in started.values():
        script.stop()


def dashboard_rows(url: str, run_id: int) -> list[list[float]]:
    """The run's epoch rows as the recorder holds them: train_loss, valid_loss, mae."""
    rows = fitboard.Client(url).run(run_id).epochs()
    return rows[["train_loss", "valid_loss", "mae"]].values.tolist()


def finished(url: str, run_id: int) -> fitboard.Run:
    """The run as the dashboard says right now."""
    return fitboard.Client(url).run(run_id)


def test_kill_9_leaves_the_run_to_the_lost_rule(forgetful, scripts):
    script = scripts["kill"]
    report = script.report()
    script.proc.kill()  # first of the tests, at once: the run has been silent for well under 10 s
    assert script.wait() == -signal.SIGKILL
    assert finished(forgetful.url, report["run"]).status == "running"  # nothing ran at its exit
    deadline = time.monotonic() + 30
    while (run := finished(forgetful.url, report["run"])).status == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert (run.status, run["error"]) == ("failed", "tracked run lost: no word from the notebook for 10 s "
                                                    "(FITBOARD_TRACKED_LOST_AFTER); its rows so far are kept")
    assert dashboard_rows(forgetful.url, report["run"]) == report["rows"]  # the fit's end sent them all


def test_exit_without_finish_keeps_every_row_and_succeeds(served, scripts):
    script = scripts["exit"]
    report = script.report()
    assert script.wait() == 0, script.output()
    run = finished(served.url, report["run"])  # asked once, right after the exit: no waiting for a timeout
    assert (run.status, run["error"]) == ("succeeded", None), script.output()
    assert len(report["rows"]) == 2 and dashboard_rows(served.url, report["run"]) == report["rows"]
    assert run["result"]["metrics"]["valid_loss"] == report["rows"][-1][1]  # the last epoch's, as logged
    assert f"run {report['run']} finished at exit: succeeded" in script.output()
    waited = float(re.search(r"exit waited ([\d.]+) s", script.output()).group(1))
    assert waited < EXIT_WAIT  # the exit waits for the sender, boundedly


@pytest.mark.parametrize(("ending", "code", "error"), [
    ("raise", 1, "ValueError: labels.csv lacks 3 rows"),  # raised in the main thread, after training
    ("thread", 0, "OSError: disk full while saving"),  # a thread's exception does not change the exit code
], ids=["main-thread", "training-thread"])
def test_an_exception_fails_the_run_with_its_message(served, scripts, ending, code, error):
    script = scripts[ending]
    report = script.report()
    assert script.wait() == code
    assert error in script.output()  # the traceback still printed (by Python, or by threading's own hook)
    run = finished(served.url, report["run"])
    assert (run.status, run["error"]) == ("failed", error)
    assert dashboard_rows(served.url, report["run"]) == report["rows"]


def test_ctrl_c_during_a_fit_cancels_the_run_with_the_rows_so_far(served, scripts):
    script = scripts["interrupt"]
    report = script.report()
    script.proc.send_signal(signal.SIGINT)
    assert script.wait() == -signal.SIGINT  # Python re-raises SIGINT once it has finished, atexit included
    assert "KeyboardInterrupt" in script.output()
    run = finished(served.url, report["run"])
    assert (run.status, run["error"]) == ("cancelled", "KeyboardInterrupt: interrupted (Ctrl-C)")
    assert len(report["rows"]) == 2  # 2 of the 3 epochs ran
    assert dashboard_rows(served.url, report["run"]) == report["rows"]
    assert run["spec"]["stages"][0]["epochs"] == 3


def test_the_scoped_form_ends_the_run_at_the_end_of_its_block(served, scripts):
    script = scripts["scoped"]
    report = script.report()
    assert (report["status"], report["error"]) == ("failed", "RuntimeError: scoring went wrong")
    assert dashboard_rows(served.url, report["run"]) == report["rows"]
    assert script.wait() == 0
    assert "finished at exit" not in script.output()  # nothing left for the exit to do


def test_a_fits_end_does_not_wait_for_a_dashboard_that_is_down():
    tracker = Tracker("down", url=f"http://127.0.0.1:{free_port()}", say=lambda _: None)
    tracker.put("epoch", {"stage": 0, "epoch": 0, "train_loss": 1.0, "metrics": {}})
    started = time.monotonic()
    assert tracker.flush(5.0) is False  # one try, refused at once: the fit's end goes on
    assert tracker.flush(5.0) is False  # known down: not even a try
    assert time.monotonic() - started < 2 and len(tracker.epochs) == 1  # the row is kept for later
    tracker.close(0)
