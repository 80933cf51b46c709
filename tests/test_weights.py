"""Pretrained weights: list, add (hash checked), download from a mirror (a local HTTP server), fail fast offline."""
from __future__ import annotations

import functools
import hashlib
import socket
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fitboard.app.core.schemas import parse_spec
from fitboard.worker.cli import main
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import ListReporter
from fitboard.worker.weights import (
    WeightsMissing,
    WeightsRejected,
    add_file,
    cache_dir,
    cached_weights_path,
    download,
    list_cached,
    pull,
)
from tests.helpers import tiny_recipe

JUNK = b"not the real resnet18 weights " * 1000


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch cache for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home"


def _named_by_hash(folder: Path, stem: str, content: bytes) -> Path:
    """A file named as torchvision names its weights: stem-<first 8 hex digits of its SHA-256>.pth."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    path.write_bytes(content)
    return path


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on the loopback serving a folder, as an internal weights mirror would."""
    folder = tmp_path / "mirror"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_list_names_the_arch_size_and_hash_check(torch_home):
    real_name = cached_weights_path("resnet18")[0].name
    (cache_dir()).mkdir(parents=True)
    (cache_dir() / real_name).write_bytes(JUNK)  # resnet18's name, other content
    good = _named_by_hash(cache_dir(), "custom", b"weights made here")
    rows = {r["file"]: r for r in list_cached()}
    assert rows[real_name] == {"arch": "resnet18", "file": real_name, "size_bytes": len(JUNK), "hash_ok": False}
    assert rows[good.name] == {"arch": None, "file": good.name, "size_bytes": 17, "hash_ok": True}


def test_list_command(torch_home, capsys):
    assert main(["weights", "list"]) == 0
    assert "no weights cached" in capsys.readouterr().out
    _named_by_hash(cache_dir(), "custom", b"abc")
    assert main(["weights", "list"]) == 0
    assert "hash ok" in capsys.readouterr().out


def test_add_copies_a_file_whose_hash_matches_its_name(torch_home, tmp_path):
    src = _named_by_hash(tmp_path / "downloads", "custom", b"some weights")
    dest = add_file(src)
    assert dest == cache_dir() / src.name and dest.read_bytes() == b"some weights"


def test_add_refuses_a_file_whose_hash_does_not_match(torch_home, tmp_path, capsys):
    bad = tmp_path / cached_weights_path("resnet18")[0].name
    bad.write_bytes(JUNK)
    with pytest.raises(WeightsRejected, match="not added"):
        add_file(bad)
    assert main(["weights", "add", str(bad)]) == 1
    assert "refused" in capsys.readouterr().err
    assert not cache_dir().exists() or not list(cache_dir().iterdir())


def test_download_verifies_then_renames_with_progress(torch_home, mirror):
    folder, url = mirror
    served = _named_by_hash(folder, "blob", b"x" * (3 << 20))  # 3 MB: several progress calls
    seen = []
    dest = download(f"{url}/{served.name}", cache_dir() / served.name, lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == served.read_bytes()
    assert seen[-1] == (3 << 20, 3 << 20) and len(seen) >= 3
    assert [p.name for p in cache_dir().iterdir()] == [served.name]  # no part file left


def test_pull_from_a_mirror_refuses_a_file_that_does_not_match_its_name(torch_home, mirror, capsys):
    folder, url = mirror
    (folder / cached_weights_path("resnet18")[0].name).write_bytes(JUNK)
    seen = []
    with pytest.raises(WeightsRejected, match="refused"):
        pull("resnet18", url, lambda done, total: seen.append(done))
    assert seen and seen[-1] == len(JUNK)  # it did download, with progress, before refusing
    assert not list(cache_dir().iterdir())  # nothing left behind
    assert main(["weights", "pull", "resnet18", "--mirror", url]) == 1
    assert "not cached" in capsys.readouterr().err and not list(cache_dir().iterdir())


def test_a_run_that_may_download_fails_fast_and_clearly_when_offline(torch_home, data_root, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port with nothing listening: connection refused, as an offline mirror would be
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FITBOARD_DOWNLOAD_WEIGHTS", "1")
    monkeypatch.setenv("FITBOARD_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    reporter = ListReporter()
    t0 = time.perf_counter()
    with pytest.raises(WeightsMissing, match="downloading them from http://127.0.0.1") as info:
        run_recipe(parse_spec(tiny_recipe(pretrained=True)), reporter, data_root, tmp_path / "out")
    assert time.perf_counter() - t0 < 10
    assert "fitboard weights pull squeezenet1_1" in str(info.value)
    assert any("downloading pretrained weights" in n.message for n in reporter.of("note"))
    assert not reporter.of("epoch")
