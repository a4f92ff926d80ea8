"""The `canaryctl` command line: one Typer app, sub-commands registered here."""

from __future__ import annotations

import typer

from canaryctl.cli import demo, manage, operator, probe, rollout, testenv

app = typer.Typer(
    name="canaryctl",
    help="Progressive delivery (canary releases) for Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rich help rendering imports rich and its markdown parser, which costs
    # more than a kubectl plugin's whole start-up. Output tables still use rich.
    rich_markup_mode=None,
)
app.add_typer(testenv.app, name="testenv")
app.command(name="rollout")(rollout.rollout)
app.command(name="plan")(rollout.plan_command)
app.command(name="get")(manage.get)
app.command(name="report")(manage.report)
app.command(name="promote")(manage.promote)
app.command(name="abort")(manage.abort)
app.command(name="pause")(manage.pause)
app.command(name="resume")(manage.resume)
app.command(name="demo")(demo.demo)
app.command(name="operator")(operator.operator)
app.command(name="probe")(probe.probe)


def main() -> None:
    """Console-script entry point (`canaryctl`, and `kubectl-canary` as a kubectl plugin)."""
    import os
    import sys

    # kubectl runs the plugin as `kubectl-canary`; help and errors should say what was typed.
    plugin = os.path.basename(sys.argv[0]) == "kubectl-canary"
    app(prog_name="kubectl canary" if plugin else "canaryctl")
