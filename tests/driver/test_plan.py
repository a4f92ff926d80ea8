"""The plan shows when each version loses its pods: after traffic and endpoints left."""

from __future__ import annotations

from canaryctl.core.models import quick_spec
from canaryctl.driver.plan import plan


def test_plan_shows_the_drain_before_removing_each_version() -> None:
    spec = quick_spec(
        "app", "default", "app-v1", "app-v2", "app", "10,100", None,
        router={"kind": "nginx", "ingress": "web"}, drain_delay="15s",
    )  # fmt: skip
    lines = plan(spec, 4)
    text = "\n".join(lines)
    drain = (
        "  wait until no EndpointSlice of service/app lists a pod of deployment/app-v1 as "
        "serving, then drainDelay 15s"
    )
    assert lines.index(drain) < lines.index("  delete deployment/app-v1")
    assert "to 0 once no route sends it traffic" in text and "drainDelay 15s has passed" in text


def test_replica_plan_narrows_the_service_then_drains_with_the_default_delay() -> None:
    spec = quick_spec("app", "default", "app-v1", "app-v2", "app", "50,100", None)
    lines = plan(spec, 4)
    narrow = next(i for i, line in enumerate(lines) if "narrow service/app to the pods" in line)
    wait = next(i for i, line in enumerate(lines) if "then drainDelay 10s" in line)
    assert narrow < wait < lines.index("  delete deployment/app-v1")
    assert "keeps its 2 pods" in lines[narrow]
