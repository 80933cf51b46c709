"""Speed modes on this CPU: fast runs, says what it could not enable, reports per-stage figures; the OOM message."""
from __future__ import annotations

import pytest
import torch

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import parse_spec
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import ListReporter
from fitboard.worker.speed import oom_message
from tests.helpers import tiny_recipe

TWO_STAGES = [{"epochs": 1, "size": 24, "presize": 32, "bs": 32, "lr": 3e-3},
              {"epochs": 1, "size": 32, "presize": 40, "bs": 32, "lr": 1e-3}]


@pytest.fixture(scope="module")
def fast_runs(data_root, tmp_path_factory):
    """The same fast recipe twice on one cache, and a default run."""
    cache = tmp_path_factory.mktemp("speed-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FITBOARD_CACHE_DIR", str(cache))
    out = []
    for name, speed in (("fast-1", "fast"), ("fast-2", "fast"), ("default", "default")):
        reporter = ListReporter()
        result = run_recipe(parse_spec(tiny_recipe(name=name, speed=speed, stages=TWO_STAGES)), reporter, data_root,
                            tmp_path_factory.mktemp(name))
        out.append((reporter, result))
    mp.undo()
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallbacks")
def test_fast_on_cpu_trains_and_says_what_it_could_not_enable(fast_runs):
    reporter, result = fast_runs[0]
    assert len(reporter.of("epoch")) == 2 and result.metrics.accuracy is not None
    note = "speed fast: no CUDA GPU here, so no mixed precision, channels_last or pinned memory"
    assert any(note in n.message for n in reporter.of("note")) and any(note in n for n in result.notes)
    speed = result.speed
    assert (speed.mode, speed.precision, speed.channels_last, speed.pin_memory) == ("fast", "fp32", False, False)
    assert [s.stage for s in speed.stages] == [0, 1]
    for s in speed.stages:
        assert s.images_per_second > 0 and 0 <= s.data_wait <= 1 and s.peak_memory_mb is None and s.steps > 0


def test_the_cache_is_built_with_progress_once_then_reused(fast_runs):
    (first, r1), (second, r2), _ = fast_runs
    assert r1.speed.presize_cache == "presize 32: built 300 of 300 images; presize 40: built 300 of 300 images"
    assert r2.speed.presize_cache == "presize 32: reused; presize 40: reused"
    built = [e for e in first.of("progress") if e.phase == "presize cache"]
    assert built and built[-1].batch == built[-1].total == 300
    assert not [e for e in second.of("progress") if e.phase == "presize cache"]


def test_default_speed_reports_figures_without_the_cache(fast_runs):
    reporter, result = fast_runs[2]
    assert result.speed.mode == "default" and result.speed.presize_cache is None
    assert len(result.speed.stages) == 2 and "speed:fast" not in reporter.of("start")[0].techniques
    assert "speed:fast" in fast_runs[0][0].of("start")[0].techniques


def test_speed_field_is_validated_by_name():
    with pytest.raises(RecipeError) as info:
        parse_spec(tiny_recipe(speed="turbo"))
    assert info.value.problems[0]["loc"] == "speed" and "'default' or 'fast'" in info.value.problems[0]["msg"]


def test_oom_message_names_stage_batch_size_and_a_batch_size_that_fits():
    gib = 2**30
    msg = oom_message(1, 64, 448, base=2 * gib, peak=70 * gib, capacity=80 * gib,
                      error="CUDA out of memory. Tried to allocate 8.00 GiB (GPU 0; 79.1 GiB total capacity)")
    # (68 + 8) GiB for 64 images -> 1.19 GiB each; (72 - 2) GiB / 1.19 = 58 -> 32, the power of two below.
    assert "stage 2 at batch size 64 (448 px)" in msg and "a batch size of 32 should fit (stages[1].bs)" in msg
    tight = oom_message(0, 2, 2048, base=79 * gib, peak=80 * gib, capacity=80 * gib, error="")
    assert "even a batch size of 1 may not fit" in tight
