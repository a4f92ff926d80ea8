"""Fuzzed specs through everything that validates input before canaryctl touches a cluster:
`parse_spec`, the analysis block (`Analysis.from_spec`: Prometheus, auth, webhooks), spec
files (`load_spec_file`: any YAML document) and the quick-mode flags (`build_spec`).

Every input must either be accepted or refused with `SpecError` naming a field: any other
exception is a crash (a traceback for the user). `make test` runs a short version; `make
chaos` runs 10,000 cases of each (CANARYCTL_FUZZ_CASES overrides both).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from canaryctl.cli.rollout import analysis_options, build_spec, router_options
from canaryctl.core.models import parse_spec
from canaryctl.driver.analysis import Analysis
from canaryctl.errors import SpecError
from fuzzing import BASE, MEGABYTE, YAML_TEXT, quick_flags, specs

SHORT = int(os.environ.get("CANARYCTL_FUZZ_CASES", "200"))
LONG = int(os.environ.get("CANARYCTL_FUZZ_CASES", "10000"))


def fuzz_settings(cases: int):
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def no_secret(name: str, key: str) -> bytes:
    """Secrets are read at the first look, not while validating: never called here."""
    raise AssertionError(f"secret {name}/{key} read while validating")


def accepted_or_named(call) -> Any:
    """Run `call`; a refusal must be a SpecError naming a field with a reason."""
    try:
        return call()
    except SpecError as exc:
        assert isinstance(exc.field, str) and exc.field.strip(), repr(exc)
        assert isinstance(exc.reason, str) and exc.reason.strip(), repr(exc)
        # The message stays readable: a 1 MB input is not echoed back whole.
        assert len(str(exc)) < 4096, f"{exc.field}: message of {len(str(exc))} characters"
        return None


def validate(data: Any) -> None:
    """What `canaryctl rollout -f` validates before any request: spec, then analysis."""
    spec = accepted_or_named(lambda: parse_spec(data))
    if spec is not None:
        accepted_or_named(lambda: Analysis.from_spec(spec, secrets=no_secret))


def load_file(tmp: Path, text: str) -> None:
    path = tmp / "canary.yaml"
    path.write_text(text)
    accepted_or_named(lambda: build_spec(path, *[None] * 5, "10,100", *[None] * 4, "delete"))


def quick(flags: dict[str, Any]) -> None:
    """The quick-mode path of `canaryctl rollout`, up to the first request."""

    def run() -> None:
        analysis = analysis_options(flags["prometheus"], flags["judge"],
                                    flags["analysis_interval"], flags["tolerance"],
                                    flags["latency_threshold"])  # fmt: skip
        routing = router_options(flags["router"], flags["ingress"], flags["virtual_service"],
                                 flags["destination_rule"], flags["httproute"], flags["header"],
                                 flags["cookie"], flags["mirror"])  # fmt: skip
        spec = build_spec(
            None, flags["name"], flags["namespace"], flags["stable"], flags["canary"],
            flags["service"], flags["steps"], flags["pause"], flags["ready_deadline"],
            flags["max_restarts"], flags["on_promotion"], analysis, flags["replica_mode"],
            routing, flags["canary_namespace"], flags["scale_down_delay"], flags["drain_delay"],
        )  # fmt: skip
        Analysis.from_spec(spec, secrets=no_secret)

    accepted_or_named(run)


def test_the_base_spec_is_valid() -> None:
    """The fuzzers mutate a spec that passes, so every validator is reached."""
    assert Analysis.from_spec(parse_spec(BASE), secrets=no_secret) is not None


def test_a_manifest_with_an_empty_spec_is_refused_naming_spec(tmp_path: Path) -> None:
    """Found by fuzzing: `spec:` left empty crashed with a TypeError (a traceback)."""
    path = tmp_path / "canary.yaml"
    for text, field in (("kind: Canary\nspec:\n", "spec"), ("spec: {}\nmetadata: 1\n", "metadata")):
        path.write_text(text)
        with pytest.raises(SpecError) as refused:
            build_spec(path, *[None] * 5, "10,100", *[None] * 4, "delete")
        assert refused.value.field == field


def test_a_megabyte_value_is_not_echoed_whole_in_the_error() -> None:
    """Found by fuzzing: a 1 MB name came back as a 1 MB error line."""
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, "name": MEGABYTE})
    assert refused.value.field == "name"
    assert len(str(refused.value)) < 1000 and "characters)" in str(refused.value)


@fuzz_settings(SHORT)
@given(specs())
def test_fuzzed_specs_are_accepted_or_refused_naming_a_field(data: Any) -> None:
    validate(data)


@fuzz_settings(SHORT)
@given(YAML_TEXT)
def test_fuzzed_spec_files_are_accepted_or_refused_naming_a_field(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    load_file(tmp_path_factory.getbasetemp(), text)


@fuzz_settings(SHORT)
@given(quick_flags())
def test_fuzzed_quick_mode_flags_are_accepted_or_refused_naming_a_field(
    flags: dict[str, Any],
) -> None:
    quick(flags)


@pytest.mark.chaos
@pytest.mark.timeout(3600)  # 10,000 cases: minutes on a busy machine
@fuzz_settings(LONG)
@given(specs())
def test_chaos_fuzzed_specs(data: Any) -> None:
    validate(data)


@pytest.mark.chaos
@pytest.mark.timeout(3600)  # 10,000 cases: minutes on a busy machine
@fuzz_settings(LONG)
@given(YAML_TEXT)
def test_chaos_fuzzed_spec_files(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    load_file(tmp_path_factory.getbasetemp(), text)


@pytest.mark.chaos
@pytest.mark.timeout(3600)  # 10,000 cases: minutes on a busy machine
@fuzz_settings(LONG)
@given(quick_flags())
def test_chaos_fuzzed_quick_mode_flags(flags: dict[str, Any]) -> None:
    quick(flags)
