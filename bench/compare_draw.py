"""The compare page's overlay charts in Debian's chromium: time from navigation start to every chart drawn, for 2, 10
and 100 runs, through a real `fitboard web` process (target: 100 runs under 2 s).

Fills a temporary SQLite database (migrated by the app's own upgrade) with 100 succeeded runs of --epochs epochs over
two stages and an LR-finder curve each, in bulk; starts `fitboard web` on it; loads /compare?ids=... --loads times
per size (after one warm-up load) and reads the page's stamp (compare.js sets <html data-charts-drawn-ms> to
performance.now() once every Plotly.newPlot promise has resolved and the next frame is due; a fitboard before this
benchmark stamped right after its newPlot calls, a little earlier). Prints p50/p95 per size, when the series arrived,
and what drew: trace types, canvases, the WebGL renderer, chart pixels in saturated colours, and Plotly's "WebGL is not
supported" notice should it have replaced a chart (its silent fallback). The browser is launched as the browser tests
launch it (tests/browser.py's CHROMIUM_ARGS; headless chromium has WebGL through SwiftShader, in software).

With the installed plotly package's plotly.min.js the pages draw SVG (its WebGL code cannot compile under the pages'
CSP); --plotly FILE also times this checkout serving FILE (FITBOARD_PLOTLY_JS), e.g. a strict build of the same
version (npm's plotly.js-strict-dist-min, plotly-strict.min.js), which draws the many-run charts with WebGL. With
--baseline DIR (a checkout of an older fitboard, e.g. `git archive <rev> | tar -x -C DIR`), a `fitboard web` from DIR
is timed too. All on the same database in the same run, taking turns load by load; the ratios to the first are
printed.

Usage: python bench/compare_draw.py [--loads 5] [--epochs 30] [--sizes 2,10,100] [--plotly FILE] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_common import compare_drawn_ms  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from web import fitboard_env, free_port, percentile, stop_process, wait_http  # noqa: E402

from fitboard.app.core.schemas import parse_spec  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.models import EpochRow, LRFind, Run, utcnow  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (one launch for tests and benchmarks)

N_RUNS = 100
TARGET_MS = 2000
LABELS = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]
# What the page says about its charts once drawn: trace types, WebGL renderer, a "no WebGL" notice from Plotly.
PROBE_JS = """() => {
  const el = document.getElementById("chart-accuracy");
  const c = document.createElement("canvas").getContext("webgl");
  const info = c && c.getExtension("WEBGL_debug_renderer_info");
  return {types: [...new Set(el.data.map((t) => t.type))], traces: el.data.length,
          canvases: el.querySelectorAll("canvas").length,
          renderer: c ? c.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : c.RENDERER) : null,
          noWebgl: document.querySelectorAll(".no-webgl").length,
          dataMs: (performance.getEntriesByName("compare:data")[0] || {}).startTime};
}"""


def spec_for(i: int, epochs: int) -> dict:
    """Recipes that differ in a few fields, as an ablation would; two stages splitting the epochs."""
    first = epochs // 2
    return parse_spec({"name": f"draw-{i}", "dataset": "digits", "arch": "resnet18", "pretrained": False,
                       "normalize": ["imagenet", "dataset", "none"][i % 3], "label_smoothing": 0.1 if i % 2 else None,
                       "seed": i, "tta": {"n": 4}, "keep_best": "accuracy",
                       "stages": [{"epochs": first, "size": 24, "presize": 32, "lr": "find"},
                                  {"epochs": epochs - first, "size": 32, "presize": 40, "lr": [1e-4, 1e-3]}]}
                      ).model_dump(mode="json")


def store_runs(url: str, epochs: int) -> list[int]:
    """N_RUNS succeeded runs, each with its own curves (epochs rows over two stages) and an LR-finder curve, in bulk."""
    rng = random.Random(0)
    engine = make_engine(url)
    first = epochs // 2
    with session_scope(engine) as s:
        runs = []
        for i in range(N_RUNS):
            acc = 0.8 + rng.random() * 0.15
            cm = [[rng.randint(0, 40) if r != c else rng.randint(20, 40) for c in range(10)] for r in range(10)]
            run = Run(name=f"draw-{i}", dataset="digits", spec=spec_for(i, epochs), status="succeeded",
                      techniques=["normalize", "progressive resizing"], best_accuracy=acc, tta_accuracy=acc + 0.005,
                      result={"metrics": {"accuracy": acc, "error_rate": 1 - acc, "valid_loss": 0.4},
                              "best": {"stage": 1, "epoch": epochs - first - 1, "metric": "accuracy", "value": acc},
                              "images_per_second": 90 + rng.random() * 20,
                              "confusion": {"labels": LABELS, "matrix": cm}})
            s.add(run)
            runs.append((run, acc))
        s.flush()
        now = utcnow()
        rows = []
        for run, acc in runs:
            for e in range(epochs):
                a = acc - (acc - 0.3) * (1 - (e + 1) / epochs) ** 2 + rng.gauss(0, 0.005)
                rows.append({"run_id": run.id, "stage": int(e >= first), "epoch": e - first * (e >= first),
                             "train_loss": 2 * (1 - a) + rng.random() * 0.05, "valid_loss": 2.2 * (1 - a),
                             "metrics": {"accuracy": a, "error_rate": 1 - a}, "seconds": 12.0, "created_at": now})
        s.execute(insert(EpochRow), rows)
        s.execute(insert(LRFind), [
            {"run_id": run.id, "stage": 0, "suggestion": 1e-3, "lrs": [10 ** (-7 + k * 8 / 99) for k in range(100)],
             "losses": [2.3 - k / 80 if k < 80 else 1.3 + (k - 80) / 5 for k in range(100)], "created_at": now}
            for run, _ in runs])
        ids = [run.id for run, _ in runs]
    engine.dispose()
    return ids


def palette_pixels(png: bytes) -> int:
    """Pixels of a chart screenshot in a saturated colour (the lines: axes, grid and text are grey)."""
    from PIL import Image

    raw = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for k in range(0, len(raw), 3) if max(raw[k:k + 3]) - min(raw[k:k + 3]) > 60)


def time_servers(bases: dict[str, str], ids: list[int], sizes: list[int], loads: int) -> dict[str, dict[int, dict]]:
    """For each server and size: draw times (ms) over `loads` loads after a warm-up, console errors, and the WebGL
    probe. The servers take turns load by load (one tab each), so a change in the machine's load hits all alike."""
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[int, dict]] = {label: {} for label in bases}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages, errors = {}, {label: [] for label in bases}
        for label in bases:
            page = pages[label] = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m, e=errors[label]: e.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc, e=errors[label]: e.append(str(exc)))
        for n in sizes:
            urls = {label: f"{base}/compare?ids={','.join(map(str, ids[:n]))}" for label, base in bases.items()}
            runs = {label: {"times": [], "data": []} for label in bases}
            for label, page in pages.items():  # warm: plotly.min.js and compare.js cached, as for anyone who
                page.goto(urls[label])        # opened a compare before
                compare_drawn_ms(page)
            for _ in range(loads):
                for label, page in pages.items():
                    page.bring_to_front()
                    page.goto(urls[label])
                    runs[label]["times"].append(compare_drawn_ms(page))
                    runs[label]["data"].append(page.evaluate(PROBE_JS)["dataMs"])
            for label, page in pages.items():
                probe = page.evaluate(PROBE_JS)
                probe["data"] = runs[label]["data"]
                probe["pixels"] = palette_pixels(page.locator("#chart-accuracy .plot-container").screenshot())
                out[label][n] = {"times": runs[label]["times"], "probe": probe, "errors": list(errors[label])}
                errors[label].clear()
        browser.close()
    return out


def serve(root: Path, plotly: Path | None, url: str, work: Path) -> tuple[subprocess.Popen, str]:
    """`fitboard web` from the checkout at root on the database url, serving the plotly bundle given (else the
    installed package's); (process, base URL) once it answers."""
    port = free_port()
    env = {**fitboard_env(work / "home", url, work / "data"), "PYTHONPATH": str(root)}
    env.pop("FITBOARD_PLOTLY_JS", None)
    if plotly is not None:
        env["FITBOARD_PLOTLY_JS"] = str(plotly.resolve())
    log = work / f"web-{port}.log"
    # From root itself (python -m puts the working directory first on the path): the code served is root's.
    proc = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "web", "--port", str(port)], cwd=root,
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=120)
    except BaseException:
        stop_process(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    """Fill, serve, load, print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=5, help="timed loads per size (after one warm-up load)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs per run (two stages)")
    ap.add_argument("--sizes", default="2,10,100", help="how many runs each compare holds (at most 100)")
    ap.add_argument("--baseline", type=Path, help="a checkout of an older fitboard to time beside this one")
    ap.add_argument("--plotly", type=Path, help="also time this checkout serving this plotly.js bundle "
                                                "(FITBOARD_PLOTLY_JS): a strict build draws WebGL")
    args = ap.parse_args()
    sizes = [min(N_RUNS, int(x)) for x in args.sizes.split(",")]
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is not installed: nothing to time")
        return 1
    with tempfile.TemporaryDirectory(prefix="fb-draw-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'draw.db'}"
        upgrade(url)
        t0 = time.perf_counter()
        ids = store_runs(url, args.epochs)
        print(f"stored {N_RUNS} runs x {args.epochs} epochs in {time.perf_counter() - t0:.1f} s", flush=True)
        variants = {"this checkout, installed plotly.min.js": (ROOT, None)}
        if args.plotly:
            variants[f"this checkout, FITBOARD_PLOTLY_JS={args.plotly}"] = (ROOT, args.plotly)
        if args.baseline:
            variants[f"baseline {args.baseline}"] = (args.baseline, None)
        procs, bases = [], {}
        try:
            for label, (root, plotly) in variants.items():
                proc, bases[label] = serve(root.resolve(), plotly, url, work)
                procs.append(proc)
            results = time_servers(bases, ids, sizes, args.loads)
        finally:
            for proc in procs:
                stop_process(proc)
    load = os.getloadavg()
    print(f"\n=== navigation start -> every compare chart drawn, Debian chromium (headless, software WebGL), "
          f"{args.loads} loads after a warm-up; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} cores ===")
    for label, res in results.items():
        print(label)
        for n, r in res.items():
            t, pr = r["times"], r["probe"]
            mark = f"  (target < {TARGET_MS} ms: {'ok' if percentile(t, 95) < TARGET_MS else 'MISSED'})" \
                if n == N_RUNS else ""
            data = [d for d in pr["data"] if d is not None]
            split = f"; series arrived p50 {percentile(data, 50):.0f} ms" if data else ""
            print(f"  {n:>3} runs  p50 {percentile(t, 50):6.0f} ms  p95 {percentile(t, 95):6.0f} ms  "
                  f"[{', '.join(f'{x:.0f}' for x in t)}]{split}{mark}")
            print(f"            accuracy chart: {pr['traces']} traces of {'/'.join(pr['types'])}, {pr['canvases']} "
                  f"canvases, {pr['pixels']} coloured pixels; WebGL renderer {pr['renderer']!r}"
                  f"{'; PLOTLY SAYS NO WEBGL' if pr['noWebgl'] else ''}"
                  f"{'; console errors: ' + '; '.join(r['errors'][:3]) if r['errors'] else ''}")
    (first, new), *others = results.items()
    for label, old in others:
        print(f"ratios ({label} / {first}, p50): " + ", ".join(
            f"{n} runs {percentile(old[n]['times'], 50) / percentile(new[n]['times'], 50):.2f}" for n in sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
