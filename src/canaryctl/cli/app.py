"""The `canaryctl` command line: one Typer app, sub-commands registered here."""

from __future__ import annotations

import typer

from canaryctl.cli import demo, testenv

app = typer.Typer(
    name="canaryctl",
    help="Progressive delivery (canary releases) for Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(testenv.app, name="testenv")
app.command(name="demo")(demo.demo)


def main() -> None:
    """Console-script entry point."""
    app()
