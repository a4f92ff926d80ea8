"""The graceful-shutdown warning: what a pod template lacks for a lossless scale-down."""

from __future__ import annotations

from typing import Any

from canaryctl.kube.workloads import shutdown_gaps

PROBE = {"httpGet": {"path": "/ready", "port": 8086}}


def template(grace: int | None = None, **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "web", "ports": [{"containerPort": 8080}], **container}]
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"spec": spec}


def test_a_template_with_probe_and_prestop_sleep_needs_nothing() -> None:
    prestop = {"preStop": {"sleep": {"seconds": 5}}}
    assert shutdown_gaps("app", template(readinessProbe=PROBE, lifecycle=prestop)) == []


def test_an_exec_sleep_counts_as_a_prestop_delay() -> None:
    prestop = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 10"]}}}
    assert shutdown_gaps("app", template(readinessProbe=PROBE, lifecycle=prestop)) == []


def test_missing_probe_and_prestop_are_named_with_their_fix() -> None:
    gaps = shutdown_gaps("app-v1", template())
    assert len(gaps) == 2
    assert gaps[0].startswith("deployment/app-v1 container web has no readinessProbe")
    assert "deployment/app-v1 container web has no preStop delay" in gaps[1]
    assert "lifecycle.preStop.sleep.seconds: 5" in gaps[1]


def test_a_grace_period_shorter_than_the_prestop_delay_is_reported() -> None:
    prestop = {"preStop": {"sleep": {"seconds": 20}}}
    gaps = shutdown_gaps("app", template(grace=15, readinessProbe=PROBE, lifecycle=prestop))
    assert gaps == [
        "deployment/app: terminationGracePeriodSeconds 15 does not cover the 20s preStop "
        "delay of container web plus shutdown; set it to at least 25"
    ]


def test_only_containers_that_serve_ports_are_checked() -> None:
    tpl = template(readinessProbe=PROBE, lifecycle={"preStop": {"sleep": {"seconds": 5}}})
    tpl["spec"]["containers"].append({"name": "log-shipper", "image": "x"})
    assert shutdown_gaps("app", tpl) == []
