"""`kubectl canary <TAB>`: completions for kubectl's plugin completion protocol.

kubectl (1.26+) completes a plugin's arguments by running ``kubectl_complete-<plugin>``
from PATH with the words typed after the plugin's name, the last one being the word under
the cursor (empty when a new word starts). It reads one choice per line (``value`` or
``value<TAB>description``) and, optionally, a last line ``:<directive>`` in Cobra's
ShellCompDirective numbering. The choices come from the same click command tree that
``canaryctl --install-completion`` uses, so both stay in step with the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Cobra's ShellCompDirective values (only those used here).
DIRECTIVE_DEFAULT = 0  # let the shell complete file names too
DIRECTIVE_NO_FILES = 4  # ShellCompDirectiveNoFileComp


def completions(words: Sequence[str]) -> tuple[list[tuple[str, str]], int]:
    """(value, help) choices for the last of ``words`` and the Cobra directive to print.

    ``words`` are the arguments after ``kubectl canary``; the last is the word being typed.
    """
    import typer.main

    # typer 0.28 carries its own copy of click, whose commands are not the click package's
    # classes, so the completer must be typer's. Any concrete one will do: only its
    # shell-neutral get_completions is used (a test fails if a typer upgrade moves it).
    try:
        from typer._completion_classes import BashComplete
    except ImportError:  # pragma: no cover - typer versions built on the click package
        from click.shell_completion import BashComplete

    from canaryctl.cli.app import app

    *done, incomplete = list(words) or [""]
    command = typer.main.get_command(app)
    complete = BashComplete(command, {}, "kubectl canary", "_KUBECTL_CANARY_COMPLETE")
    items = complete.get_completions(done, incomplete)
    choices = [(item.value, (item.help or "").splitlines()[0] if item.help else "")
               for item in items if item.type == "plain"]  # fmt: skip
    # No choice of ours (a path such as `-f FILE`, a free value): let the shell offer files.
    return choices, DIRECTIVE_NO_FILES if choices else DIRECTIVE_DEFAULT


def render(choices: list[tuple[str, str]], directive: int) -> str:
    """The protocol's text: one choice per line (tab before a description), then the directive."""
    lines = [f"{value}\t{help_}" if help_ else value for value, help_ in choices]
    return "".join(f"{line}\n" for line in lines) + f":{directive}\n"


def main() -> None:
    """Console-script entry point ``kubectl_complete-canary`` (called by kubectl, not users)."""
    choices, directive = completions(sys.argv[1:])
    sys.stdout.write(render(choices, directive))
