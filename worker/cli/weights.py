"""`fitboard weights list|add|pull`: the pretrained weights in this host's torch cache, and how they get there."""
from __future__ import annotations

import sys
import time

from fitboard.app.core.settings import Settings
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_OK


def _mb(n: int | None) -> str:
    """Bytes in MB for the table."""
    return "?" if n is None else f"{n / 2**20:.1f} MB"


def cmd_list(args) -> int:
    """One line per cached weights file: architecture, file, size and hash check."""
    from fitboard.worker.weights import cache_dir, list_cached  # torch loads only for the weights commands

    rows = list_cached()
    print(f"torch weights cache: {cache_dir()}")
    if not rows:
        print("no weights cached")
        return EXIT_OK
    check = {True: "ok", False: "MISMATCH", None: "no hash in name"}
    for r in rows:
        print(f"{r['arch'] or '-':<15} {r['file']:<40} {_mb(r['size_bytes']):>10}  hash {check[r['hash_ok']]}")
    return EXIT_FAILED if any(r["hash_ok"] is False for r in rows) else EXIT_OK


def cmd_add(args) -> int:
    """Copy files downloaded elsewhere into the cache, each only if its hash prefix checks out."""
    from fitboard.worker.weights import WeightsRejected, add_file

    status = EXIT_OK
    for name in args.files:
        try:
            print(f"added {add_file(name)}")
        except (WeightsRejected, OSError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            status = EXIT_FAILED
    return status


class Bar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str):
        self.label, self.last = label, 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        pct = f"{100 * done / total:5.1f}%" if total else ""
        print(f"\r{self.label}: {_mb(done)} of {_mb(total)} {pct}", end="", file=sys.stderr, flush=True)


def cmd_pull(args) -> int:
    """Download architectures' weights from the publisher or the mirror, verified against their names."""
    from fitboard.worker.weights import WeightsRejected, cached_weights_path, pull, source_url

    mirror = args.mirror or Settings().weights_mirror
    status = EXIT_OK
    for arch in args.archs:
        path, _ = cached_weights_path(arch)
        if path.is_file() and not args.force:
            print(f"{arch}: already cached at {path}")
            continue
        try:
            pull(arch, mirror, Bar(arch))
            print(f"\n{arch}: saved {path}")
        except (WeightsRejected, OSError) as exc:
            print(f"\n{arch}: not cached: {getattr(exc, 'reason', None) or exc} ({source_url(arch, mirror)})",
                  file=sys.stderr)
            status = EXIT_FAILED
    return status


def _arch(value: str) -> str:
    """An architecture name fitboard knows."""
    from fitboard.app.core.schemas import ARCHITECTURES

    if value not in ARCHITECTURES:
        raise ValueError(value)
    return value


def add_commands(sub) -> None:
    """weights list, weights add, weights pull."""
    p = sub.add_parser("weights", help="pretrained weights in this host's torch cache")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    w = wsub.add_parser("list", help="cached weights: architecture, file, size, hash check")
    w.set_defaults(func=cmd_list)
    w = wsub.add_parser("add", help="copy weights files downloaded elsewhere into the cache (hash checked)")
    w.add_argument("files", nargs="+", help="files named as torchvision publishes them, e.g. resnet50-11ad3fa6.pth")
    w.set_defaults(func=cmd_add)
    w = wsub.add_parser("pull", help="download architectures' weights (hash checked)")
    w.add_argument("archs", nargs="+", type=_arch, metavar="ARCH", help="e.g. resnet50 densenet121")
    w.add_argument("--mirror", help="an HTTP mirror of the weight files (default $FITBOARD_WEIGHTS_MIRROR)")
    w.add_argument("--force", action="store_true", help="download even when already cached")
    w.set_defaults(func=cmd_pull)
