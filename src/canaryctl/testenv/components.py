"""The pieces of the local test bed as data, and the one runner that starts and stops them.

Each piece (etcd, kube-apiserver, ..., containerd, kubelet, kube-proxy) is a ``Component``
value built by one small function from the cluster's settings: its command, the files it
needs, the components it links to (it starts after they are healthy) and a health check.
``Runner`` starts a list of them in dependency order, records every pid as soon as it has
one (so a crash half-way still lets ``down`` find everything), waits for health, and stops
them in reverse. Adding a component is one builder and one line in the list.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv.binaries import Progress

HealthCheck = Callable[[], bool]


@dataclass(frozen=True)
class Component:
    """One process of the test bed, described as data."""

    name: str
    command: tuple[str, ...]
    #: Components that must be healthy before this one starts.
    links: tuple[str, ...] = ()
    #: True once the component serves; None means "running is enough".
    health: HealthCheck | None = None
    #: What the health check waits for, named in time-out errors.
    health_what: str = ""
    #: Files written before the start, path -> text (configs, CNI lists, ...).
    files: Mapping[Path, str] = field(default_factory=dict)
    #: Extra environment variables (added to the runner's environment).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Runs once the component is healthy, before anything linked to it starts
    #: (e.g. loading images into containerd).
    setup: Callable[[], None] | None = None
    #: Runs once its links are healthy, right before the start: for what can only be
    #: made then (e.g. a ServiceAccount token the component reads at start-up).
    before_start: Callable[[], None] | None = None
    #: Seconds ``stop`` waits after SIGTERM before SIGKILL.
    stop_grace: float = 10.0


def order(components: Sequence[Component]) -> list[Component]:
    """The components sorted so each comes after its links (stable for independent ones)."""
    by_name = {c.name: c for c in components}
    if len(by_name) != len(components):
        raise TestenvError("testenv: two components share a name")
    done: list[Component] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(comp: Component) -> None:
        if comp.name in seen:
            return
        if comp.name in visiting:
            raise TestenvError(f"testenv: components link in a cycle through {comp.name}")
        visiting.add(comp.name)
        for link in comp.links:
            if link not in by_name:
                raise TestenvError(f"testenv: {comp.name} links to unknown component {link}")
            visit(by_name[link])
        visiting.discard(comp.name)
        seen.add(comp.name)
        done.append(comp)

    for comp in components:
        visit(comp)
    return done


def names_folder(pid: int, folder: str) -> bool | None:
    """One look at a process: True if it runs with ``folder`` in its command line, False
    if it runs without, None if it is gone (or a zombie, which has exited)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.split(") ", 1)[-1].startswith("Z"):
        return None
    return folder in cmdline


def alive(pid: int, folder: str) -> bool:
    """True if pid runs and is ours: its command line names our state folder.

    Checking the command line keeps ``down`` from killing an unrelated process that
    reused a pid after a reboot. For a pid we recorded; to scan every process of the
    host use ``names_folder`` (one look each), since this waits up to a second on a
    process that is not ours.
    """
    if not pid:
        return False
    # A child caught between fork and exec still shows its parent's command line (or an
    # empty one): look again for a moment before calling a live process someone else's.
    for attempt in range(20):
        ours = names_folder(pid, folder)
        if ours is not False:
            return bool(ours)
        if attempt < 19:
            time.sleep(0.05)
    return False


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def stop_pid(pid: int, folder: str, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only if the pid is still ours."""
    if not alive(pid, folder):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, folder):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Reap it if it is our child (same process started it), so no zombie is left.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Runner:
    """Starts components as local processes, one log file each, in the state folder."""

    def __init__(self, folder: Path, progress: Progress = print) -> None:
        self.folder = folder
        self.progress = progress
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        components: Sequence[Component],
        pids: MutableMapping[str, int],
        save: Callable[[], None],
        deadline: float,
    ) -> None:
        """Start every component after its links are healthy; wait until all are healthy.

        ``pids`` is updated and ``save`` called right after each start, so the caller's
        saved state always names every process that may be running.
        """
        healthy: set[str] = set()
        components = order(components)
        by_name = {c.name: c for c in components}
        for comp in components:
            for link in comp.links:
                if link not in healthy:
                    self._ready(by_name[link], pids, deadline)
                    healthy.add(link)
            if comp.before_start is not None:
                comp.before_start()
            for path, text in comp.files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            pids[comp.name] = self.spawn(comp)
            save()
        for comp in components:
            if comp.name not in healthy:
                self._ready(comp, pids, deadline)

    def _ready(self, comp: Component, pids: Mapping[str, int], deadline: float) -> None:
        self.wait_healthy(comp, pids, deadline)
        if comp.setup is not None:
            comp.setup()

    def spawn(self, comp: Component) -> int:
        """Start one component's process (its log appended to <name>.log); its pid."""
        log = open(self.folder / f"{comp.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        # A new session keeps the test bed alive after the CLI that started it exits,
        # and keeps a Ctrl-C in that terminal from reaching it.
        proc = subprocess.Popen(
            list(comp.command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.folder,
            env={**os.environ, **comp.env} if comp.env else None,
        )
        log.close()
        self._procs[comp.name] = proc
        return proc.pid

    def wait(self, check: HealthCheck, pids: Mapping[str, int], deadline: float, what: str) -> None:
        """Poll ``check`` until true; fail at once when a started component has exited."""
        while time.monotonic() < deadline:
            self.raise_if_dead(pids)
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise TestenvError(f"testenv: timed out waiting for {what}; logs in {self.folder}")

    def wait_healthy(self, comp: Component, pids: Mapping[str, int], deadline: float) -> None:
        """Wait for one component's health check (or only that it runs, without one)."""
        if comp.health is not None:
            self.wait(comp.health, pids, deadline, comp.health_what or f"{comp.name} health")
        else:
            self.raise_if_dead(pids)

    def raise_if_dead(self, pids: Mapping[str, int]) -> None:
        """Raise with the log's tail when a component has exited."""
        folder = str(self.folder)
        for name, pid in pids.items():
            # Our own children are asked directly: a process that is just exec'ing can
            # briefly show an empty command line in /proc.
            proc = self._procs.get(name)
            dead = proc.poll() is not None if proc is not None else not alive(pid, folder)
            if dead:
                code = proc.poll() if proc is not None else None
                log = self.folder / f"{name}.log"
                raise TestenvError(
                    f"testenv: {name} exited during start-up (exit status {code}); "
                    f"see {log}:\n{tail(log)}"
                )

    @staticmethod
    def stop(
        pids: Mapping[str, int],
        folder: str,
        before_stop: Mapping[str, Callable[[], None]] | None = None,
        grace: Mapping[str, float] | None = None,
    ) -> None:
        """Stop every recorded process in reverse start order.

        ``before_stop[name]`` runs first while that component still serves (e.g. the
        kubelet tearing down its pods); its failure does not keep the rest from stopping.
        """
        for name in reversed(list(pids)):
            hook = (before_stop or {}).get(name)
            if hook is not None and alive(pids[name], folder):
                try:
                    hook()
                except Exception as exc:  # down must go on; the cause is shown
                    print(f"testenv: cleaning up {name} before stopping it failed: {exc}")
            stop_pid(pids[name], folder, (grace or {}).get(name, 10.0))

    @staticmethod
    def status(pids: Mapping[str, int], folder: str) -> dict[str, dict[str, object]]:
        """Per component: pid, alive, resident memory in MiB."""
        out: dict[str, dict[str, object]] = {}
        for name, pid in pids.items():
            up = alive(pid, folder)
            rss = rss_bytes(pid) if up else 0
            out[name] = {"pid": pid, "alive": up, "rss_mib": round(rss / 2**20, 1)}
        return out
