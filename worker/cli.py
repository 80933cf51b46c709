"""The fitboard command line: train a recipe in the foreground, write the demo dataset."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from app.schemas import RecipeError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _settings(args):
    """Settings with command-line overrides applied."""
    from app.settings import Settings

    overrides = {"data_root": Path(args.data_root)} if getattr(args, "data_root", None) else {}
    return Settings(**overrides)


def cmd_train(args) -> int:
    """Run a recipe here and now, printing the epoch table (or JSON lines)."""
    from app.datasets import resolve_dataset
    from app.recipes import load_recipe
    from worker.reporting import ConsoleReporter, JsonReporter

    settings = _settings(args)
    reporter = JsonReporter() if args.json else ConsoleReporter()
    try:
        spec = load_recipe(args.recipe)
        dataset = resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed)
    except RecipeError as exc:
        reporter.emit({"event": "error", "message": str(exc), "problems": exc.problems})
        return EXIT_INVALID
    from worker.engine import run_recipe  # fastai loads only once recipe and dataset are known good

    out_dir = Path(args.out) if args.out else settings.home / "cli-runs" / spec.name
    try:
        run_recipe(spec, reporter, settings.data_root, out_dir, dataset=dataset, num_workers=settings.num_workers)
    except KeyboardInterrupt:
        reporter.emit({"event": "error", "message": "interrupted"})
        return EXIT_FAILED
    except Exception as exc:  # a failed run reports its message and traceback tail, never a bare crash
        reporter.emit({"event": "error", "message": f"{type(exc).__name__}: {exc}",
                       "traceback": "".join(traceback.format_exc().splitlines(True)[-20:])})
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo_data(args) -> int:
    """Write scikit-learn's digits as a Cassava-layout dataset."""
    from app.demo_data import write_digits

    target = Path(args.dir) if args.dir else _settings(args).data_root / "digits"
    write_digits(target, limit=args.limit)
    print(f"wrote the digits demo dataset to {target}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="fitboard", description="Launch and compare fastai training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run a recipe in the foreground")
    p.add_argument("recipe", help="recipe file (YAML or JSON)")
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.add_argument("--out", help="folder for the exported model and reports (default $FITBOARD_HOME/cli-runs/NAME)")
    p.add_argument("--json", action="store_true", help="print one JSON object per event instead of a table")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("demo-data", help="write the digits demo dataset in the Cassava layout")
    p.add_argument("dir", nargs="?", help="target folder (default $FITBOARD_DATA_ROOT/digits)")
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.add_argument("--limit", type=int, help="write only this many images")
    p.set_defaults(func=cmd_demo_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fitboard console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
