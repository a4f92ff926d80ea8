"""Start-up stays cheap: what `--help` and the rollout list import (behaviour, not timing).

The times themselves are measured by benchmarks/cli_startup.py; these tests pin the causes
found there: rich help rendering (and its markdown parser), pydantic (typer 0.29 coerces
every parameter through it; our models use it too), and the rollout engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

PROBE = """
import json, sys
sys.argv = ["canaryctl", *json.loads(sys.argv[1])]
import canaryctl.cli.app
from canaryctl.cli.app import main
# `get` ends the process without teardown; exit normally here, to print what was loaded.
canaryctl.cli.app._exit_now = sys.exit
try:
    main()
except SystemExit:
    pass
print("\\n@@" + json.dumps(sorted(sys.modules)))
"""


def refusing_kubeconfig(folder: Path) -> Path:
    """A kubeconfig in `folder` whose server refuses at once (nothing listens on port 9):
    a command that talks to the cluster runs up to its first request."""
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return kubeconfig


def imported(args: list[str], tmp_path: Path) -> set[str]:
    """Modules loaded by one CLI invocation in a fresh interpreter."""
    kubeconfig = refusing_kubeconfig(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    return set(json.loads(out.stdout.rsplit("\n@@", 1)[1]))


def test_help_renders_without_rich_pydantic_or_the_kubernetes_client(tmp_path):
    mods = imported(["--help"], tmp_path)
    assert "canaryctl.cli.app" in mods
    for heavy in ("rich", "rich.markdown", "markdown_it", "pydantic", "lightkube", "httpx"):
        assert heavy not in mods, f"--help imported {heavy}"


def test_subcommand_help_does_not_import_the_engine(tmp_path):
    mods = imported(["get", "--help"], tmp_path)
    for heavy in ("rich.markdown", "pydantic", "canaryctl.driver.engine", "canaryctl.core"):
        assert heavy not in mods, f"get --help imported {heavy}"


def test_listing_rollouts_needs_only_the_api_client(tmp_path):
    mods = imported(["get", "-A"], tmp_path)
    assert "lightkube" in mods and "canaryctl.cli.listing" in mods  # it did try to list
    for heavy in ("rich", "pydantic", "canaryctl.core", "canaryctl.driver.engine"):
        assert heavy not in mods, f"get (list) imported {heavy}"
    # Only the invoked command is registered: the other commands' modules stay unloaded.
    for other in ("canaryctl.cli.demo", "canaryctl.cli.probe", "canaryctl.cli.testenv"):
        assert other not in mods, f"get (list) imported {other}"


@pytest.mark.parametrize(
    "args", [["get", "--help"], ["get", "--bogus"], ["plan", "--help"], ["testenv", "--help"],
             ["testenv", "up", "--help"], ["promote"], ["rollout", "--steps"]],
)  # fmt: skip
def test_an_app_of_one_command_answers_like_the_whole_app(args):
    """main() registers only the command named first: its help, usage and errors must not
    change because the other commands are missing."""
    from canaryctl.cli.app import build, command_of

    assert command_of(args) == args[0]
    runner = CliRunner()
    whole = runner.invoke(build(), args, prog_name="canaryctl")
    one = runner.invoke(build(command_of(args)), args, prog_name="canaryctl")
    assert whole.output.strip()
    assert (one.exit_code, one.output) == (whole.exit_code, whole.output)


def test_help_and_unknown_commands_get_every_command():
    from canaryctl.cli.app import COMMANDS, build, command_of

    runner = CliRunner()
    for args in ([], ["--help"], ["gett"], ["--install-completion"]):
        assert command_of(args) is None
    listed = runner.invoke(build(command_of(["--help"])), ["--help"], prog_name="canaryctl")
    assert all(f"  {name} " in listed.output for name in COMMANDS), listed.output
    typo = runner.invoke(build(command_of(["gett"])), ["gett"], prog_name="canaryctl")
    assert typo.exit_code == 2 and "Did you mean 'get'" in typo.output


def _unbuffered_free_env(kubeconfig: Path) -> dict[str, str]:
    """A child environment where stdout into a pipe is block-buffered, as for most users."""
    return {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}


def test_get_without_teardown_still_flushes_output_and_keeps_exit_codes(tmp_path):
    """A one-shot `get` ends with os._exit (no interpreter teardown): buffered output must
    still reach the pipe, and success, usage and cluster errors keep their exit codes."""
    kubeconfig = refusing_kubeconfig(tmp_path)
    env = _unbuffered_free_env(kubeconfig)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "canaryctl", *args], capture_output=True,
                              text=True, timeout=60, env=env)  # fmt: skip

    help_ = cli("get", "--help")
    assert help_.returncode == 0 and help_.stdout.startswith("Usage: canaryctl get"), help_
    assert "--all-namespaces" in help_.stdout
    usage = cli("get", "--bogus")
    assert usage.returncode == 2 and "No such option: --bogus" in usage.stderr, usage
    down = cli("get", "-A")
    assert down.returncode == 1 and "cannot reach the API server" in down.stderr, down
    assert "Traceback" not in down.stderr


@pytest.mark.parametrize(
    ("code", "status", "stderr"), [("0", 0, ""), ("None", 0, ""), ("3", 3, ""), ("'why'", 1, "why")]
)
def test_exit_without_teardown_flushes_buffered_output_and_keeps_the_status(code, status, stderr):
    """`_exit_now` (the end of a one-shot `get`) skips the interpreter's teardown, which is
    where Python flushes a block-buffered stdout (a pipe): it must flush it itself."""
    script = f"from canaryctl.cli.app import _exit_now\nprint('row')\n_exit_now({code})\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr.strip()) == (status, "row\n", stderr)


def test_exit_without_teardown_reports_output_it_could_not_write(tmp_path):
    script = "from canaryctl.cli.app import _exit_now\nprint('row')\n_exit_now(0)\n"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", script], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 120  # as Python's own exit when stdout cannot be flushed
    assert "output lost" in done.stderr
