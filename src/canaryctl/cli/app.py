"""The `canaryctl` command line: one Typer app, sub-commands registered here.

A run registers only the sub-command it was asked for (`canaryctl get ...` loads the `get`
command alone): Typer reads every registered command's signature and type hints on each
start, and doing that for all of them cost more than the module imports of `get` itself.
Help, completion and anything that is not a known command name get every command.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any, NoReturn

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


#: Commands that print once and end (see main); `get -w` turns collection back on.
SHORT_LIVED = frozenset({"get"})


def main() -> None:
    """Console-script entry point (`canaryctl`, and `kubectl-canary` as a kubectl plugin)."""
    import os
    import sys

    # kubectl runs the plugin as `kubectl-canary`; help and errors should say what was typed.
    plugin = os.path.basename(sys.argv[0]) == "kubectl-canary"
    command = command_of(sys.argv[1:])
    app = build(command)
    prog_name = "kubectl canary" if plugin else "canaryctl"
    if command not in SHORT_LIVED:
        app(prog_name=prog_name)
        return
    # `get` is what a person (or a shell prompt, or `watch`) runs most, and it only prints.
    # Measured in instructions on the local cluster: the garbage collections run while the
    # API client is imported free nothing (4% of a list), and the interpreter's teardown,
    # which frees every loaded module one by one, is 7% more. Skip both; the kernel closes
    # the connection.
    import gc

    gc.disable()
    try:
        app(prog_name=prog_name)
    except SystemExit as done:
        _exit_now(done.code)
    _exit_now(0)


def _exit_now(code: object) -> NoReturn:
    """What `sys.exit(code)` does, without the interpreter's teardown."""
    import os
    import sys

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # as sys.exit("message") does
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError) as exc:  # disk full, reader gone (`| head`)
            code = code or 120  # Python's own exit status when it cannot flush
            if stream is sys.stdout:
                print(f"error: output lost: {exc}", file=sys.stderr)
    os._exit(code or 0)
