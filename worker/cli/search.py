"""`fitboard search BASE.yaml --space SPACE.yaml --trials N`: start a search on a fitboard server and, with
--follow, print each trial as it ends and the verify sweep's verdicts (through fitboard.Client)."""
from __future__ import annotations

import json
import time

from fitboard.errors import FitboardError, RecipeFileError
from fitboard.recipe_files import parse_text, read_recipe_file
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_OK, add_project, add_url, client_for, refused, say

POLL_SECONDS = 3.0
MAX_SPACE_BYTES = 1_000_000
ENDED = ("succeeded", "failed", "cancelled", "pruned")


def _read_space(path: str) -> dict:
    """The space file (YAML or JSON): {field path: [choices] or {int|float|log: [low, high]}}."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_SPACE_BYTES + 1)
    except OSError as exc:
        raise RecipeFileError(path, f"cannot read the space file: {exc.strerror}") from None
    if len(text) > MAX_SPACE_BYTES:
        raise RecipeFileError(path, "the space file is over 1 MB")
    # The recipes' loader: yaml.safe_load expanded a few lines of *aliases until the command hung, and a deeply nested
    # or 5,000-digit value ended in a traceback.
    space = parse_text(text, path, failed="not valid YAML")
    if not isinstance(space, dict) or not space:
        raise RecipeFileError(path, "a space file holds a mapping: {field path: [choices] or {int|float|log: "
                                    "[low, high]}}")
    return space


def _trial_line(t: dict, metric: str) -> str:
    """One ended trial in words."""
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in t["params"].items())
    if t["status"] == "pruned":
        how = f"pruned at epoch {t['pruned']['epoch']}"
    elif t["status"] == "succeeded" and t["value"] is not None:
        how = f"{metric} {t['value']:.4f}"
    else:
        how = t["status"] + (f" ({t['error'][:200]})" if t.get("error") else "")
    return f"trial {t['number']} (run {t['run_id']}): {how} [{params}] after {t['epochs']} epochs"


def _ending(s: dict) -> list[str]:
    """How a search ended: its status, the budget, each verified winner."""
    b = s["budget"]
    lines = [f"search {s['id']}: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else ""),
             f"budget: {b['epochs_trained']} epochs trained of {b['epochs_if_all_full']} for every trial in full"
             + (f", {b['epochs_full_grid']} for the full grid" if b.get("epochs_full_grid") else "")]
    for w in (s.get("verify") or {}).get("winners", []):
        lines.append(f"verified: {w['verdict']} (search {s['options']['metric']} {w['search_value']:.4f}, "
                     f"verified mean accuracy {w['verified']['mean']})")
    return lines


def follow(client, search_id: int) -> int:
    """Print each trial as it ends, then the budget and verdicts; exit 0 when the search is done."""
    said, verifying = set(), False
    while True:
        s = client.search(id=search_id)
        for t in s["trials"]:
            if t["number"] not in said and t["status"] in ENDED:
                said.add(t["number"])
                say(_trial_line(t, s["options"]["metric"]))
        if s["status"] == "verifying" and not verifying:
            verifying = True
            say(f"search {search_id}: budget spent; verifying on sweep {s['verify']['sweep_id']}")
        if s["status"] in ("done", "failed", "cancelled"):
            for line in _ending(s):
                say(line)
            return EXIT_OK if s["status"] == "done" else EXIT_FAILED
        time.sleep(POLL_SECONDS)


def cmd_search(args) -> int:
    """Post a search; print its id (and follow it with --follow)."""
    options = {k: v for k, v in {"max_trials": args.trials, "max_parallel": args.parallel, "pruner": args.pruner,
                                 "sampler": args.sampler, "metric": args.metric, "k": args.k,
                                 "seeds": args.seeds, "priority": args.priority}.items() if v is not None}
    with client_for(args) as client:
        try:
            search = client.search(read_recipe_file(args.recipe), _read_space(args.space), **options)
            say(f"search {search['id']} started (Optuna study {search['study_name']}): "
                f"{client.url}/searches/{search['id']}")
            return follow(client, search["id"]) if args.follow else EXIT_OK
        except (RecipeFileError, FitboardError) as exc:
            return refused(exc, client.url)


def add_commands(sub) -> None:
    """search."""
    p = sub.add_parser("search", help="search a space around a recipe with pruning, then verify the winners")
    p.add_argument("recipe", help="the base recipe (YAML or JSON)")
    p.add_argument("--space", required=True, help="YAML/JSON: {field path: [choices] or {int|float|log: [lo, hi]}}")
    p.add_argument("--trials", type=int, help="max_trials (default 20, at most FITBOARD_MAX_SWEEP_RUNS)")
    p.add_argument("--parallel", type=int, help="max_parallel (default: the live workers)")
    p.add_argument("--pruner", choices=("asha", "hyperband", "median", "none"))
    p.add_argument("--sampler", choices=("tpe", "random", "grid"))
    p.add_argument("--metric", choices=("accuracy", "error_rate", "valid_loss"))
    p.add_argument("--k", type=int, help="configurations the verify sweep checks (default 2)")
    p.add_argument("--seeds", type=int, help="fresh seeds of the verify sweep (default 3)")
    p.add_argument("--priority", choices=("high", "normal", "low"),
                   help="of every trial and of the verify sweep in the fair queue (default normal)")
    add_url(p)
    add_project(p)
    p.add_argument("--follow", action="store_true", help="print each trial as it ends, then the verdicts")
    p.set_defaults(func=cmd_search)
