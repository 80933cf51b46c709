"""`fitboard doctor`: check that this host is ready (database, broker, data, artifacts, GPUs, weights, clocks)."""
from __future__ import annotations

import json

from fitboard.worker.cli.common import EXIT_FAILED, EXIT_OK, add_data_root, settings_from
from fitboard.worker.doctor import FAIL, report, run_checks, table


def cmd_doctor(args) -> int:
    """Print every check (a table, or JSON with --json); exit 1 when any check fails."""
    settings = settings_from(args)
    checks = run_checks(settings)
    if args.json:
        print(json.dumps(report(checks), indent=2))
    else:
        print(f"fitboard doctor: FITBOARD_HOME={settings.home}")
        print(table(checks))
    return EXIT_FAILED if any(c.status == FAIL for c in checks) else EXIT_OK


def add_commands(sub) -> None:
    """doctor."""
    p = sub.add_parser("doctor", help="check that this host is ready: a table of OK / WARN / FAIL with fixes")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    add_data_root(p)
    p.set_defaults(func=cmd_doctor)
