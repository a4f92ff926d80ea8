"""The `canaryctl` command line: one Typer app, sub-commands registered here.

A run registers only the sub-command it was asked for (`canaryctl get ...` loads the `get`
command alone): Typer reads every registered command's signature and type hints on each
start, and doing that for all of them cost more than the module imports of `get` itself.
Help, completion and anything that is not a known command name get every command.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

import typer

#: Sub-commands in the order `--help` lists them: name -> (module in canaryctl.cli, object).
#: A Typer sub-app (a command group) is added with `add_typer`, a function with `command`.
COMMANDS: dict[str, tuple[str, str]] = {
    "testenv": ("testenv", "app"),
    "rollout": ("rollout", "rollout"),
    "plan": ("rollout", "plan_command"),
    "get": ("manage", "get"),
    "report": ("manage", "report"),
    "promote": ("manage", "promote"),
    "abort": ("manage", "abort"),
    "pause": ("manage", "pause"),
    "resume": ("manage", "resume"),
    "demo": ("demo", "demo"),
    "operator": ("operator", "operator"),
    "probe": ("probe", "probe"),
}


def _root() -> None:
    """Progressive delivery (canary releases) for Kubernetes."""


def build(only: str | None = None) -> typer.Typer:
    """The Typer app with every sub-command, or with `only` that one (same behaviour)."""
    app = typer.Typer(
        name="canaryctl",
        help="Progressive delivery (canary releases) for Kubernetes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        # Plain help: rich help rendering imports rich and its markdown parser, which costs
        # more than a kubectl plugin's whole start-up. Output tables still use rich.
        rich_markup_mode=None,
    )
    # A root callback keeps the app a command group when one command is registered (Typer
    # would otherwise run that command as the whole program, `get` as its NAME argument).
    app.callback()(_root)
    for name, (module, attr) in COMMANDS.items():
        if only not in (None, name):
            continue
        target = getattr(import_module(f"canaryctl.cli.{module}"), attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name=name)(target)
    return app


@functools.cache
def __getattr__(name: str) -> Any:
    """`app`: the app with every command (tests, completion), built on first use."""
    if name == "app":
        return build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def command_of(args: list[str]) -> str | None:
    """The sub-command to register alone for these arguments, or None for all of them."""
    return args[0] if args and args[0] in COMMANDS else None


def main() -> None:
    """Console-script entry point (`canaryctl`, and `kubectl-canary` as a kubectl plugin)."""
    import os
    import sys

    # kubectl runs the plugin as `kubectl-canary`; help and errors should say what was typed.
    plugin = os.path.basename(sys.argv[0]) == "kubectl-canary"
    build(command_of(sys.argv[1:]))(prog_name="kubectl canary" if plugin else "canaryctl")
