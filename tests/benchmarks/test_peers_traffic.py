"""The traffic benchmark's pure half: the weight the route objects hold, the share measured
while a weight held, failures by phase, the table; and the objects and the acceptance
check the run uses (no cluster, no real node)."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers import load_benchmark

# Under the name traffic.py imports it by, so the test and the script share one module.
tr = load_benchmark("peers/traffic_report.py", "traffic_report")


def _ingress(**notes: str) -> dict:
    return {"metadata": {"name": "app-canary", "annotations": notes}}


def test_nginx_weight_reads_the_canary_annotations() -> None:
    prefix = "nginx.ingress.kubernetes.io/"
    assert tr.nginx_weight(None) == 0
    assert (
        tr.nginx_weight(_ingress(**{prefix + "canary": "true", prefix + "canary-weight": "25"}))
        == 25
    )
    # Flagger keeps its canary Ingress between rollouts with weight 0.
    assert (
        tr.nginx_weight(_ingress(**{prefix + "canary": "true", prefix + "canary-weight": "0"})) == 0
    )
    assert (
        tr.nginx_weight(_ingress(**{prefix + "canary": "false", prefix + "canary-weight": "50"}))
        == 0
    )
    total = {
        prefix + "canary": "true",
        prefix + "canary-weight": "1",
        prefix + "canary-weight-total": "4",
    }
    assert tr.nginx_weight(_ingress(**total)) == 25
    assert (
        tr.nginx_weight(_ingress(**{prefix + "canary": "true", prefix + "canary-weight": "x"})) == 0
    )


def _route(*rules: list[tuple[str, int]]) -> dict:
    return {
        "spec": {
            "rules": [
                {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in rule]}
                for rule in rules
            ]
        }
    }


def test_gateway_weight_takes_the_weighted_rule_naming_the_canary() -> None:
    assert tr.gateway_weight(None, "app-canary") == 0
    assert tr.gateway_weight(_route([("app", 100)]), "app-canary") == 0
    assert tr.gateway_weight(_route([("app-primary", 75), ("app-canary", 25)]), "app-canary") == 25
    # A header rule for testers names only the canary; the weighted rule decides.
    header_first = _route([("app-canary", 1)], [("app", 50), ("app-canary", 50)])
    assert tr.gateway_weight(header_first, "app-canary") == 50
    assert tr.gateway_weight(_route([("app", 0), ("app-canary", 0)]), "app-canary") == 0
    unweighted = {"spec": {"rules": [{"backendRefs": [{"name": "app"}, {"name": "app-canary"}]}]}}
    assert tr.gateway_weight(unweighted, "app-canary") == 50


def test_endpoint_weight_is_the_canary_share_of_ready_endpoints() -> None:
    assert tr.endpoint_weight({}) == 0
    assert tr.endpoint_weight({"stable": 2, "canary": 1}) == 33
    assert tr.endpoint_weight({"stable": 0, "canary": 2}) == 100


def _answers(start: float, seconds: float, rate: float, canary_every: int, loop: str = "a"):
    out = []
    n = int(seconds * rate)
    for i in range(n):
        version = "v2" if i % canary_every == 0 else "v1"
        out.append(tr.Answer(start + i / rate, loop, 200, version, 0.01))
    return out


def test_steps_measure_each_held_weight_after_the_settle_time() -> None:
    marks = [tr.Mark(t, 0, "Progressing") for t in (0.0, 1.0)]
    marks += [tr.Mark(2.0 + 0.2 * i, 25, "Progressing") for i in range(50)]  # 2.0 .. 11.8
    marks += [tr.Mark(12.0 + 0.2 * i, 50, "Progressing") for i in range(50)]  # 12 .. 21.8
    marks += [tr.Mark(22.0, 100, "Promoting")]
    answers = _answers(0.0, 12.0, 100, 4) + _answers(12.0, 10.0, 100, 2)
    # Requests during the first second of each weight, and a failure, are not counted.
    answers.append(tr.Answer(5.0, "b", None, None, 5.0, "ReadTimeout"))
    found = tr.steps(marks, answers, "v2", settle=1.0)
    assert [s.weight for s in found] == [25, 50]
    first, second = found
    assert (first.start, first.end) == (3.0, 12.0)
    assert first.answered == 900 and first.canary == 225 and first.failed == 1
    assert first.share == pytest.approx(25.0) and first.within
    assert second.answered == 900 and second.canary == 450 and second.within
    assert second.row()["by_loop"] == {"a": {"answered": 900, "canary": 450, "share_pct": 50.0}}


def test_a_weight_held_while_the_primary_takes_the_new_version_is_kept_apart() -> None:
    # Flagger keeps 50% while it promotes (copies the canary into the primary): the
    # primary answers with the new version too, which is not the weight's split.
    marks = [tr.Mark(0.2 * i, 50, "Progressing") for i in range(50)]  # 0 .. 9.8
    marks += [tr.Mark(10.0 + 0.2 * i, 50, "Promoting") for i in range(50)]  # 10 .. 19.8
    marks += [tr.Mark(20.0, 0, "Finalising")]
    answers = _answers(0.0, 10.0, 100, 2) + _answers(10.0, 10.0, 100, 1)
    summary = tr.summarize(answers, marks, "v2", "v1", since=0.0)
    assert [(s["weight"], s["phase"], s["share_pct"]) for s in summary["steps"]] == [
        (50, "Progressing", 50.0)
    ]
    (other,) = summary["steps_other_phases"]
    assert (other["phase"], other["share_pct"], other["answered"]) == ("Promoting", 100.0, 1000)
    # canaryctl pauses at each weight: Progressing then Paused is one step, settled once.
    marks = [tr.Mark(0.0, 25, "Progressing"), tr.Mark(0.5, 25, "Paused"), tr.Mark(6.0, 0, "X")]
    (step,) = tr.steps(marks, _answers(0.0, 6.0, 100, 4), "v2")
    assert (step.start, step.end, step.answered, step.phase) == (1.0, 6.0, 500, "Progressing")


def test_a_share_far_from_its_weight_is_flagged() -> None:
    step = tr.Step(25, 0.0, 10.0, answered=1000, canary=400)
    assert not step.within
    assert tr.Step(25, 0.0, 10.0, answered=1000, canary=260).within
    assert not tr.Step(25, 0.0, 10.0).within


def test_summarize_counts_failures_by_loop_code_and_phase() -> None:
    marks = [tr.Mark(0.0, 0, "Succeeded"), tr.Mark(1.0, 25, "Progressing"),
             tr.Mark(5.0, 0, "RollingBack"), tr.Mark(8.0, 0, "RolledBack")]  # fmt: skip
    answers = [
        tr.Answer(0.5, "new-conn", 200, "v1", 0.01),
        tr.Answer(2.0, "new-conn", 200, "v2", 0.01),
        tr.Answer(5.5, "new-conn", 502, "v2", 0.01),
        tr.Answer(6.0, "keep-alive", None, None, 5.0, "ReadTimeout"),
        tr.Answer(6.5, "keep-alive", 200, None, 0.01),  # not the app answering
        tr.Answer(9.0, "keep-alive", 200, "v9", 0.01),
    ]
    summary = tr.summarize(answers, marks, "v2", "v1", since=1.0)
    assert summary["requests"] == 6 and summary["failed"] == 3
    assert summary["loops"]["new-conn"]["codes"] == {"502": 1}
    assert summary["loops"]["keep-alive"]["codes"] == {"ReadTimeout": 1, "200": 1}
    assert summary["failed_by_phase"] == {"RollingBack": 3}
    assert summary["first_failures"][0] == {
        "after_s": 4.5, "loop": "new-conn", "code": "502", "phase": "RollingBack"
    }  # fmt: skip
    assert summary["unexpected_versions"] == {"v9": 1}
    changes = tr.phase_changes(marks, since=1.0)
    assert changes[0] == (-1.0, "Succeeded", 0) and changes[-1] == (7.0, "RolledBack", 0)


def test_table_has_a_row_per_run() -> None:
    step = tr.Step(25, 0.0, 10.0, answered=400, canary=101).row()
    summary = {"failed": 2, "steps": [step],
               "loops": {"new-conn": {"failed": 2, "requests": 500, "codes": {"502": 2}},
                         "keep-alive": {"failed": 0, "requests": 250, "codes": {}}}}  # fmt: skip
    run = {"router": "nginx", "tool": "flagger", "scenario": "rollback", "ended": "Failed",
           "took_s": 41.2, "summary": summary}  # fmt: skip
    text = tr.table([run])
    assert text.count("\n") == 2
    run["failed_check_to_weight_0_s"] = 20.46
    run["timeline"] = [(0.0, "Progressing", 25), (30.0, "Failed", 0)]
    text = tr.table([run])
    row = "| 1 | nginx | flagger | rollback | Failed | 41 | 20.5 | 2 (keep-alive: 0/250; new-conn: "
    assert row + "2/500) [502 x2]" in text
    assert "25: 25.2 of 400 | - |" in text
    summary["after_end"] = {"v2.0.0": 300}
    assert "| v2.0.0 x300 |" in tr.table([run])
    run["timeline"] = [(0.0, "Progressing", 0)]  # blue/green: the canary never had weight
    assert "| Failed | 41 | - |" in tr.table([run])


# --- the objects and the acceptance check of the run --------------------------------------

traffic = load_benchmark("peers/traffic.py", "peers_traffic")


def _pair(tool: str, router: str):
    return traffic.Pair(tool, router, bed=None)


@pytest.mark.parametrize("router", ["nginx", "gateway", "kubernetes"])
def test_the_canaryctl_canary_is_a_valid_managed_spec(router: str) -> None:
    from canaryctl.driver.analysis import parse_analysis
    from canaryctl.kube.canary import spec_of
    from canaryctl.providers.webhooks import Webhook

    pair = _pair("canaryctl", router)
    spec = spec_of(pair.canary("http://127.0.0.1:1/check/x"))
    assert spec.target_ref is not None and spec.namespace == pair.namespace
    analysis = parse_analysis(spec)
    assert analysis is not None and analysis.prometheus is None and analysis.failure_limit == 2
    hooks = [Webhook.from_mapping(w) for w in analysis.webhooks]
    assert [(h.type.value, h.url) for h in hooks] == [("rollout", "http://127.0.0.1:1/check/x")]
    kinds = [d["kind"] for d in pair.objects()]
    assert kinds == ["Service", "HTTPRoute" if router == "gateway" else "Ingress"]
    assert spec.router.kind == {"nginx": "nginx", "gateway": "gateway"}.get(router, "replicas")


@pytest.mark.parametrize("router", ["nginx", "gateway", "kubernetes"])
def test_the_flagger_canary_names_its_router_objects(router: str) -> None:
    pair = _pair("flagger", router)
    body = pair.canary("http://127.0.0.1:1/check/x").to_dict()["spec"]
    providers = {"nginx": "nginx", "gateway": "gatewayapi:v1", "kubernetes": "kubernetes"}
    assert body["provider"] == providers[router]
    assert body["analysis"]["webhooks"][0]["type"] == "rollout"
    if router == "kubernetes":
        assert body["analysis"]["iterations"] == 3 and "stepWeight" not in body["analysis"]
    elif router == "nginx":
        assert body["ingressRef"]["name"] == "app"
    else:
        assert body["service"]["gatewayRefs"] and body["service"]["hosts"] == [pair.host]
        assert [d["kind"] for d in pair.objects()] == ["Service"]  # Flagger writes the route


def test_the_app_is_the_seed_app_on_the_real_node_with_its_version() -> None:
    doc = _pair("flagger", "nginx").app("v9.9.9")
    template = doc["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert doc["spec"]["selector"]["matchLabels"] == {"app": "app", "track": "main"}
    assert {"name": "VERSION", "value": "v9.9.9"} in container["env"]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert template["spec"]["nodeSelector"] == {"canaryctl.dev/node": "real"}


def test_the_acceptance_hook_fails_a_bad_canary_only_after_it_took_traffic() -> None:
    served = {"v3.0.0": 0}
    with traffic.Hooks() as hooks:
        good = hooks.checks.setdefault("good", traffic.Check())
        bad = hooks.checks.setdefault(
            "bad", traffic.Check(fail=True, version="v3.0.0", served=served.get)
        )
        payload = json.dumps({"name": "app", "phase": "Progressing"})

        def call(name: str) -> int:
            return httpx.post(hooks.url(name), content=payload, timeout=5).status_code

        assert call("good") == 200
        assert call("bad") == 200  # the canary has not answered yet
        served["v3.0.0"] = traffic.FAIL_AFTER
        assert call("bad") == 500
        assert call("nobody") == 404
    assert [c[1:] for c in bad.calls] == [(200, "Progressing"), (500, "Progressing")]
    assert len(good.calls) == 1
