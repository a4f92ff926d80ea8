"""The component runner: dependency order, health waits, pids recorded, reverse stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import components, dataplane
from canaryctl.testenv.components import Component, Runner, alive, names_folder, order
from helpers import wait_until


def _sleeper(name: str, folder: Path, links: tuple[str, ...] = (), **kw: object) -> Component:
    # The folder on the command line is how the runner recognises its processes.
    script = "import sys, time; time.sleep(60)"
    return Component(
        name=name, command=(sys.executable, "-c", script, str(folder)), links=links, **kw
    )


def test_order_puts_each_component_after_its_links_and_keeps_independent_ones_in_place(
    tmp_path: Path,
) -> None:
    comps = [
        _sleeper("scheduler", tmp_path, ("apiserver",)),
        _sleeper("apiserver", tmp_path, ("etcd",)),
        _sleeper("etcd", tmp_path),
        _sleeper("kwok", tmp_path, ("apiserver",)),
    ]
    assert [c.name for c in order(comps)] == ["etcd", "apiserver", "scheduler", "kwok"]


def test_order_refuses_unknown_links_and_cycles(tmp_path: Path) -> None:
    with pytest.raises(TestenvError, match="unknown component etcd"):
        order([_sleeper("apiserver", tmp_path, ("etcd",))])
    with pytest.raises(TestenvError, match="cycle"):
        order([_sleeper("a", tmp_path, ("b",)), _sleeper("b", tmp_path, ("a",))])


def test_runner_starts_after_links_are_healthy_runs_setup_and_stops_in_reverse(
    tmp_path: Path,
) -> None:
    events: list[str] = []
    ready_at = time.monotonic() + 0.5

    def db_healthy() -> bool:
        return time.monotonic() >= ready_at

    comps = [
        _sleeper("app", tmp_path, ("db",)),
        _sleeper("db", tmp_path, health=db_healthy, setup=lambda: events.append("db setup")),
    ]
    pids: dict[str, int] = {}
    saved: list[dict[str, int]] = []
    runner = Runner(tmp_path, progress=lambda _m: None)
    runner.start(comps, pids, lambda: saved.append(dict(pids)), time.monotonic() + 10)
    try:
        assert list(pids) == ["db", "app"]
        assert saved[0] == {"db": pids["db"]}, "each pid is saved as soon as it exists"
        assert events == ["db setup"]
        assert time.monotonic() >= ready_at, "app started only once db was healthy"
        status = Runner.status(pids, str(tmp_path))
        assert all(s["alive"] for s in status.values())
        stopped: list[str] = []
        hooks = {n: (lambda n=n: stopped.append(n)) for n in pids}
        Runner.stop(pids, str(tmp_path), hooks)
        assert stopped == ["app", "db"]
        assert not any(alive(pid, str(tmp_path)) for pid in pids.values())
    finally:
        Runner.stop(pids, str(tmp_path))


def test_runner_reports_a_component_that_exits_during_start_up_with_its_log(
    tmp_path: Path,
) -> None:
    crash = Component(
        name="crashy",
        command=(sys.executable, "-c", "print('boom'); raise SystemExit(3)", str(tmp_path)),
        health=lambda: False,
    )
    pids: dict[str, int] = {}
    with pytest.raises(TestenvError, match=r"crashy exited during start-up \(exit status 3\)"):
        Runner(tmp_path).start([crash], pids, lambda: None, time.monotonic() + 10)


def test_runner_writes_the_component_files_before_starting_it(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "x.yaml"
    comp = Component(
        name="reader",
        command=(
            sys.executable,
            "-c",
            "import sys, time; open(sys.argv[1]).read(); time.sleep(60)",
            str(config),
        ),
        files={config: "hello: world\n"},
    )
    pids: dict[str, int] = {}
    try:
        Runner(tmp_path).start([comp], pids, lambda: None, time.monotonic() + 10)
        time.sleep(0.3)
        assert alive(pids["reader"], str(tmp_path))
        assert config.read_text() == "hello: world\n"
    finally:
        Runner.stop(pids, str(tmp_path))


def test_before_start_runs_once_the_links_are_healthy_and_before_the_process_starts(
    tmp_path: Path,
) -> None:
    events: list[str] = []
    ready_at = time.monotonic() + 0.3

    def db_healthy() -> bool:
        ok = time.monotonic() >= ready_at
        if ok and "db healthy" not in events:
            events.append("db healthy")
        return ok

    token = tmp_path / "token"

    def issue() -> None:
        events.append("before app")
        token.write_text("secret")

    app = Component(
        name="app",
        command=(
            sys.executable,
            "-c",
            "import sys, time; open(sys.argv[1]).read(); time.sleep(60)",
            str(token),
        ),
        links=("db",),
        before_start=issue,
    )
    pids: dict[str, int] = {}
    try:
        Runner(tmp_path).start(
            [app, _sleeper("db", tmp_path, health=db_healthy)],
            pids,
            lambda: None,
            time.monotonic() + 10,
        )
        time.sleep(0.3)
        assert events == ["db healthy", "before app"]
        assert alive(pids["app"], str(tmp_path)), "app read the file made for it and runs"
    finally:
        Runner.stop(pids, str(tmp_path))


def test_names_folder_tells_ours_from_others_and_from_the_gone(tmp_path: Path) -> None:
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert wait_until(lambda: names_folder(ours.pid, str(tmp_path)), timeout=10)
        assert names_folder(other.pid, str(tmp_path)) is False
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
    assert names_folder(ours.pid, str(tmp_path)) is None


def test_stray_shims_are_killed_with_one_look_at_each_process_of_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = str(tmp_path)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", folder])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_until(lambda: names_folder(stray.pid, folder), timeout=10)

        def no_waiting(_seconds: float) -> None:
            # `alive` waits a second on every process that is not ours (kernel threads,
            # other programs): a scan of the host through it took over a minute.
            raise AssertionError("the scan of /proc waited on a process")

        monkeypatch.setattr(components.time, "sleep", no_waiting)
        dataplane._kill_strays(folder)
        monkeypatch.undo()
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None, "a process that does not name the folder is left alone"
    finally:
        for proc in (stray, bystander):
            proc.kill()
            proc.wait()
