"""Pure parts of the real node: placement of manifests and the host checks' messages."""

from __future__ import annotations

import pytest

from canaryctl.testenv import dataplane


def test_on_real_node_adds_the_selector_and_toleration_to_a_deployment_template() -> None:
    doc = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "other", "operator": "Exists"}],
                    "containers": [],
                }
            }
        },
    }
    placed = dataplane.on_real_node(doc)
    spec = placed["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd", "canaryctl.dev/node": "real"}
    assert {"key": "other", "operator": "Exists"} in spec["tolerations"]
    assert {
        "key": "canaryctl.dev/real",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    assert (
        "nodeSelector" in doc["spec"]["template"]["spec"]
        and len(doc["spec"]["template"]["spec"]["tolerations"]) == 1
    ), "the input is left as it was"


def test_on_real_node_places_a_bare_pod() -> None:
    placed = dataplane.on_real_node({"kind": "Pod", "spec": {"containers": []}})
    assert placed["spec"]["nodeSelector"] == {"canaryctl.dev/node": "real"}


def test_without_root_the_node_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataplane.os, "geteuid", lambda: 1000)
    assert any("needs root" in why for why in dataplane.missing_requirements())


def test_an_unknown_proxy_mode_is_named() -> None:
    assert any("'ipvs'" in why for why in dataplane.missing_requirements("ipvs"))
