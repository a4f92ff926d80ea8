"""The one Event builder serves Deployment and Canary events alike (pure construction)."""

from __future__ import annotations

from lightkube.models.core_v1 import ObjectReference

from canaryctl.kube import events


def test_build_attaches_to_any_object_and_caps_message() -> None:
    ref = ObjectReference(
        apiVersion="canaryctl.dev/v1alpha1", kind="Canary", name="web", namespace="ns", uid="u1"
    )
    event = events.build(ref, "Warning", "RolledBack", "x" * 5000, component="canaryctl-operator")
    assert event.involvedObject == ref
    assert event.metadata.namespace == "ns"
    assert event.metadata.name.startswith("web.")
    assert len(event.message) == events.MAX_MESSAGE
    assert event.source.component == event.reportingComponent == "canaryctl-operator"
    assert event.firstTimestamp == event.lastTimestamp
    assert event.count == 1


def test_build_names_are_unique_per_event() -> None:
    ref = ObjectReference(apiVersion="apps/v1", kind="Deployment", name="web", namespace="ns")
    first = events.build(ref, "Normal", "WeightSet", "10%")
    second = events.build(ref, "Normal", "WeightSet", "10%")
    assert first.metadata.name != second.metadata.name
    assert first.source.component == events.COMPONENT
