"""Start and stop the local stand-ins: SecantusDB for MongoDB, moto_server for AWS.

Each runs as a separate process in its own process group on a free loopback port, is waited for
with a deadline, and is stopped with its children. SecantusDB is GPL-2.0 and a development
dependency only: it is started as a program here and never imported.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): signal this process when its parent dies


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the process that started it dies.

    Fixtures and the demo stop their servers in `finally`, but a SIGKILLed test run or demo runs
    no `finally`; without this its servers would outlive it and keep their ports. Linux only
    (elsewhere a no-op). The signal follows the *thread* that started the child, so servers are
    started from long-lived threads (the main thread, in practice).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ServerStartError(RuntimeError):
    """A stand-in server did not start or did not answer in time; the message says which and why."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def executable(name: str) -> str:
    """The path of a console script, preferring the running interpreter's virtualenv."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name} is not installed: run `make venv` first")
    return found


def wait_until(check: Callable[[], bool], *, deadline_s: float, what: str) -> None:
    """Poll `check` until it returns True or the deadline passes (then raise with `what`)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {deadline_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its output kept in a log file."""

    name: str
    args: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        handle, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(self.args),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the deadline."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=deadline_s)
        # Children that outlived their leader still carry the group id.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, for tests of recovery."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_DEADLINE_S)


def _start_with_retries(
    name: str, make_args: Callable[[int], list[str]], ready: Callable[[int], bool]
) -> tuple[ManagedProcess, int]:
    """Start a server on a free port, retrying on another port if the first was taken."""
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        managed = ManagedProcess(name, make_args(port))
        managed.start()

        def answered_or_exited(port: int = port, managed: ManagedProcess = managed) -> bool:
            return ready(port) or not managed.running

        try:
            wait_until(
                answered_or_exited,
                deadline_s=START_DEADLINE_S,
                what=f"{name} answering on 127.0.0.1:{port}",
            )
        except TimeoutError as error:
            last_error = f"{error}\n{managed.output_tail()}"
            managed.stop()
            continue
        if managed.running:
            return managed, port
        last_error = (
            f"{name} exited with code {managed.process.returncode if managed.process else '?'}"
        )
        last_error += f"\n{managed.output_tail()}"
        managed.stop()
    raise ServerStartError(f"{name} failed to start: {last_error}")


@dataclass
class MongoServer:
    """A running SecantusDB: a single-node replica set named `secantus` on loopback."""

    process: ManagedProcess
    port: int

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?replicaSet=secantus"

    def stop(self) -> None:
        self.process.stop()


def _mongo_answers(port: int) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def start_secantus(
    *,
    storage_path: str | Path = ":memory:",
    test_commands: bool = True,
    oplog_max_entries: int | None = None,
    oplog_retention_seconds: int | None = None,
) -> MongoServer:
    """Start SecantusDB on a free port and wait until it answers `ping`."""

    def args(port: int) -> list[str]:
        command = [executable("secantusd-py"), "--port", str(port)]
        command += ["--storage-path", str(storage_path), "--log-level", "WARNING"]
        if test_commands:
            command.append("--enable-test-commands")
        if oplog_max_entries is not None:
            command += ["--oplog-max-entries", str(oplog_max_entries)]
        if oplog_retention_seconds is not None:
            command += ["--oplog-retention-seconds", str(oplog_retention_seconds)]
        return command

    process, port = _start_with_retries("secantusd", args, _mongo_answers)
    return MongoServer(process, port)


@dataclass
class MotoServer:
    """A running moto_server: every AWS API this project uses, on loopback."""

    process: ManagedProcess
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget every resource (moto's own reset API)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.process.stop()


def _moto_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def start_moto() -> MotoServer:
    """Start moto_server on a free loopback port and wait until it answers."""
    process, port = _start_with_retries(
        "moto_server",
        lambda port: [executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        _moto_answers,
    )
    return MotoServer(process, port)


@contextlib.contextmanager
def running_secantus(**options: object) -> Iterator[MongoServer]:
    server = start_secantus(**options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_moto() -> Iterator[MotoServer]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()
