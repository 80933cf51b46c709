"""A fork server for the tests' worker processes.

A worker's cold start imports torch, torchvision, fastai and the training engine: about 6 s of CPU, and the suite
starts over thirty workers on a 2-core machine. One server per test process imports them once; each worker is then a
fork of it that runs `python -m fitboard.worker.cli ARGS` exactly as a shell would: its own environment, working
directory, log file and process id, killed and reaped like any child. The cold start itself stays tested where a
user meets it (`fitboard up`, `fitboard train`, the installed wheel in test_packaging).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

SERVER = textwrap.dedent("""
    import json, os, random, runpy, signal, sys
    # what `fitboard worker` imports before it reads its settings (none of them reads the environment on import)
    import fitboard.worker.cli, fitboard.worker.cli.serve, fitboard.worker.engine, fitboard.worker.factory
    exits = sys.argv[1]

    def reap(*_):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            with open(os.path.join(exits, str(pid) + ".tmp"), "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))
            os.replace(os.path.join(exits, str(pid) + ".tmp"), os.path.join(exits, str(pid)))

    signal.signal(signal.SIGCHLD, reap)
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                os.chdir(job["cwd"])
                os.environ.clear()
                os.environ.update(job["env"])
                log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                random.seed()
                sys.argv = ["fitboard"] + job["args"]
                runpy.run_module("fitboard.worker.cli", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        print(pid, flush=True)
""")


class Forked:
    """A worker forked by the server, with the part of subprocess.Popen's interface the tests use."""

    def __init__(self, pid: int, exits: Path):
        self.pid, self._exit_file, self.returncode = pid, exits / str(pid), None

    def poll(self) -> int | None:
        if self.returncode is None and self._exit_file.exists():
            self.returncode = int(self._exit_file.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The fork server of this test process, started on first use and stopped at exit."""

    _lock = threading.Lock()
    _server: subprocess.Popen | None = None
    _exits: Path | None = None

    @classmethod
    def spawn(cls, args: list[str], env: dict, cwd: Path, log: Path) -> Forked:
        with cls._lock:
            if cls._server is None or cls._server.poll() is not None:
                cls._start(env)
            cls._server.stdin.write(json.dumps({"args": args, "env": env, "cwd": str(cwd), "log": str(log)}) + "\n")
            cls._server.stdin.flush()
            return Forked(int(cls._server.stdout.readline()), cls._exits)

    @classmethod
    def _start(cls, env: dict) -> None:
        cls._exits = Path(tempfile.mkdtemp(prefix="fitboard-zygote-"))
        atexit.register(shutil.rmtree, cls._exits, True)  # the exit codes it wrote; the server ends with our stdin
        # The server's own environment only matters to what its imports read; each fork gets its worker's.
        server_env = {**env, "OMP_NUM_THREADS": "1"}
        cls._server = subprocess.Popen([sys.executable, "-c", SERVER, str(cls._exits)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=server_env,
                                       cwd=Path(__file__).resolve().parent.parent)
        ready = cls._server.stdout.readline()
        assert ready.strip() == "ready", f"the worker fork server did not start: {ready!r}"
