"""`fitboard train` (a recipe in the foreground, printing its epoch table) and `fitboard demo-data`."""
from __future__ import annotations

import traceback
from pathlib import Path

from fitboard.app.core.datasets import ResolvedDataset, resolve_dataset
from fitboard.app.core.demo_data import write_digits
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.events import ErrorEvent
from fitboard.app.core.recipes import load_recipe
from fitboard.app.core.schemas import RunSpec
from fitboard.app.core.settings import Settings
from fitboard.app.services.runs import registry_for
from fitboard.app.store.db import session_scope
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, add_data_root, settings_from, store_engine
from fitboard.worker.reporters import ConsoleReporter, JsonReporter


def _resolve_with_registry(spec: RunSpec, settings: Settings) -> ResolvedDataset:
    """The recipe's dataset, looking up registered names when this machine has a fitboard database."""
    if settings.database_url is None and not (settings.home / "fitboard.db").exists():
        return resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed)  # no store: folders only
    engine = store_engine(settings)
    try:
        with session_scope(engine) as session:
            return resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed, registry=registry_for(session))
    finally:
        engine.dispose()


def cmd_train(args) -> int:
    """Run a recipe here and now, printing the epoch table (or JSON lines)."""
    settings = settings_from(args)
    reporter = JsonReporter() if args.json else ConsoleReporter()
    try:
        spec = load_recipe(args.recipe)
        dataset = _resolve_with_registry(spec, settings)
    except RecipeError as exc:
        reporter.emit(ErrorEvent(message=str(exc), problems=exc.problems))
        return EXIT_INVALID
    from fitboard.worker.engine import run_recipe  # torch and fastai load only once recipe and dataset are known good

    out_dir = Path(args.out) if args.out else settings.home / "cli-runs" / spec.name
    try:
        run_recipe(spec, reporter, settings.data_root, out_dir, dataset=dataset, num_workers=settings.num_workers)
    except KeyboardInterrupt:
        reporter.emit(ErrorEvent(message="interrupted"))
        return EXIT_FAILED
    except Exception as exc:  # a failed run reports its message and traceback tail, never a bare crash
        reporter.emit(ErrorEvent(message=f"{type(exc).__name__}: {exc}",
                                 traceback="".join(traceback.format_exc().splitlines(True)[-20:])))
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo_data(args) -> int:
    """Write scikit-learn's digits as a Cassava-layout dataset."""
    target = Path(args.dir) if args.dir else settings_from(args).data_root / "digits"
    write_digits(target, limit=args.limit)
    print(f"wrote the digits demo dataset to {target}")
    return EXIT_OK


def add_commands(sub) -> None:
    """train and demo-data."""
    p = sub.add_parser("train", help="run a recipe in the foreground")
    p.add_argument("recipe", help="recipe file (YAML or JSON)")
    add_data_root(p)
    p.add_argument("--out", help="folder for the exported model and reports (default $FITBOARD_HOME/cli-runs/NAME)")
    p.add_argument("--json", action="store_true", help="print one JSON object per event instead of a table")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("demo-data", help="write the digits demo dataset in the Cassava layout")
    p.add_argument("dir", nargs="?", help="target folder (default $FITBOARD_DATA_ROOT/digits)")
    add_data_root(p)
    p.add_argument("--limit", type=int, help="write only this many images")
    p.set_defaults(func=cmd_demo_data)
