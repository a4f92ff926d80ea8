"""`kubectl canary <TAB>`: the choices kubectl relays come from the CLI's own command tree."""

from __future__ import annotations

from canaryctl.cli.completion import DIRECTIVE_DEFAULT, DIRECTIVE_NO_FILES, completions, render


def values(words: list[str]) -> list[str]:
    return [value for value, _ in completions(words)[0]]


def test_first_word_lists_every_command_with_its_summary() -> None:
    choices, directive = completions([""])
    names = [value for value, _ in choices]
    for command in ("rollout", "plan", "get", "promote", "abort", "pause", "resume", "testenv"):
        assert command in names
    assert directive == DIRECTIVE_NO_FILES
    assert dict(choices)["promote"], "each command carries its help line"


def test_a_prefix_narrows_and_sub_commands_and_options_follow_the_words_typed() -> None:
    assert values(["pro"]) == ["promote", "probe"]
    assert values(["testenv", ""]) == ["build", "up", "down", "status", "kubeconfig"]
    assert "--all-namespaces" in values(["get", "--"])
    assert values(["rollout", "--rou"]) == ["--router"]
    assert values(["rollout", "--router", "ng"]) == ["nginx"]


def test_a_path_value_leaves_completion_to_the_shells_file_names() -> None:
    assert completions(["rollout", "-f", ""]) == ([], DIRECTIVE_DEFAULT)


def test_render_speaks_cobras_protocol() -> None:
    assert render([("get", "Show rollouts"), ("abort", "")], 4) == "get\tShow rollouts\nabort\n:4\n"
    assert render([], 0) == ":0\n"
