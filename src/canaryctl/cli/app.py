"""The `canaryctl` command line: one Typer app, sub-commands registered here."""

from __future__ import annotations

import typer

from canaryctl.cli import demo, manage, operator, rollout, testenv

app = typer.Typer(
    name="canaryctl",
    help="Progressive delivery (canary releases) for Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(testenv.app, name="testenv")
app.command(name="rollout")(rollout.rollout)
app.command(name="plan")(rollout.plan_command)
app.command(name="get")(manage.get)
app.command(name="promote")(manage.promote)
app.command(name="abort")(manage.abort)
app.command(name="pause")(manage.pause)
app.command(name="resume")(manage.resume)
app.command(name="demo")(demo.demo)
app.command(name="operator")(operator.operator)


def main() -> None:
    """Console-script entry point."""
    app()
