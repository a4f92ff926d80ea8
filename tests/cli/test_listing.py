"""The rollout list's rows, from the stored objects' fields only (pure: no cluster)."""

from __future__ import annotations

from canaryctl.cli import listing


def test_a_canary_row_uses_its_status_display_fields_and_ready_condition():
    obj = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"steps": [{"setWeight": 10}, {"setWeight": 100}]},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec",
                                   "message": "steps[0].setWeight: must be > 0"}]},
    }  # fmt: skip
    row = listing.canary_summary(obj)
    assert (row.source, row.phase, row.step, row.weight) == ("Canary", "Pending", "1/2", "0%")
    assert row.reason.startswith("InvalidSpec: steps[0].setWeight")
    running = {**obj, "status": {"phase": "Progressing", "step": "2/2", "weight": 50}}
    assert listing.canary_summary(running).step == "2/2"


def test_a_configmap_row_counts_steps_and_names_its_driver():
    spec = {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]}
    status = {"phase": "Paused", "stepIndex": 1, "weight": 10}
    row = listing.configmap_summary("web", "shop", spec, status, "laptop/4242")
    assert row.cells() == ("shop", "web", "ConfigMap", "Paused", "2/3", "10%", "", "laptop/4242")


def test_the_table_aligns_columns_and_hides_the_namespace_unless_all():
    rows = [
        listing.configmap_summary("a", "ns1", {"steps": []}, None, None),
        listing.configmap_summary(
            "longer-name", "ns1", {"steps": []}, {"phase": "Succeeded"}, None
        ),
    ]
    text = listing.format_table(rows, all_namespaces=False)
    lines = text.splitlines()
    assert lines[0].split() == list(listing.COLUMNS[1:])
    assert lines[1].index("ConfigMap") == lines[2].index("ConfigMap")
    assert "NAMESPACE" in listing.format_table(rows, all_namespaces=True)


def test_the_reason_column_says_what_a_held_rollout_waits_for():
    held = {"phase": "Paused", "stepIndex": 1, "weight": 10,
            "holdReason": "waiting for a promote command"}  # fmt: skip
    spec = {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]}
    row = listing.configmap_summary("web", "shop", spec, held, "laptop/1")
    assert row.reason == "waiting for a promote command"
    rolling = {**held, "phase": "RollingBack", "reason": "Aborted",
               "holdReason": "waiting for stable 8/10 ready"}  # fmt: skip
    assert listing.configmap_summary("web", "shop", spec, rolling, None).reason == (
        "Aborted: waiting for stable 8/10 ready"
    )
    obj = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec,
        "status": {"phase": "Pending", "holdReason": "canary Deployment web-v2 not found",
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
    }  # fmt: skip
    assert listing.canary_summary(obj).reason == "canary Deployment web-v2 not found"
    denied = {"type": "Ready", "status": "False", "reason": "WriteDenied", "message": "no"}
    obj["status"]["conditions"] = [denied]
    assert listing.canary_summary(obj).reason == "WriteDenied: no"
