"""Real processes of the fault tests: each in its own process group (so a kill takes its
children too), its output in a log file under the test's folder, and every one of them stopped
by `Processes.stop_all()` — the fixture's finalizer — whatever the test did."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Proc:
    """One role (`worker`, `relay`, `temporal`) that may be started, killed and restarted."""

    name: str
    command: Sequence[str]
    env: dict[str, str]
    logs: Path
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    crashes: int = 0  # exits nobody asked for (the supervisor started it again)
    wanted: bool = False  # the supervisor keeps it running while True
    history: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is running already"
        self.wanted = True
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts} at {time.strftime('%X')} =====\n".encode())
        log.flush()
        try:
            self.popen = subprocess.Popen(
                list(self.command),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches its children
            )
        finally:
            log.close()
        self.history.append(f"start pid={self.popen.pid}")

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown code runs (a crash, a pulled plug)."""
        self.wanted = False
        self._signal(signal.SIGKILL)
        self._reap(10)
        self.history.append("kill")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL when the group has not left within `grace` seconds."""
        self.wanted = False
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        if not self._reap(grace):
            self._signal(signal.SIGKILL)
            self._reap(10)
        self.history.append("stop")

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _reap(self, timeout: float) -> bool:
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def revive(self) -> bool:
        """What a service manager does (deploy: `restart: unless-stopped`): start it again when
        it exited though it was wanted; True when it did."""
        if not self.wanted or self.running or self.popen is None:
            return False
        self.crashes += 1
        self.history.append(f"exited rc={self.popen.returncode}")
        self.start()
        return True

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    logs: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def add(
        self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> Proc:
        proc = Proc(name, command, env, self.logs, cwd)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        """The finalizer: the application processes first, the Temporal server last."""
        for proc in sorted(self.procs.values(), key=lambda p: p.name == "temporal"):
            proc.stop(grace=5)

    def report(self) -> str:
        parts = []
        for proc in self.procs.values():
            parts.append(f"--- {proc.name} ({', '.join(proc.history)}) ---\n{proc.tail()}")
        return "\n".join(parts)
