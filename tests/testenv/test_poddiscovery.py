"""The target file for the test bed's Prometheus: pods as Kubernetes discovery labels them."""

from __future__ import annotations

from canaryctl.testenv.poddiscovery import META, PodDiscovery, target_groups


def pod(name: str, ip: str | None, **labels: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "demo",
            "uid": f"uid-{name}",
            "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9101"},
        },
        "spec": {"nodeName": "real-node"},
        "status": {"phase": "Running", "podIP": ip} if ip else {"phase": "Pending"},
    }


def test_one_target_per_pod_with_an_address_and_its_metadata_as_labels() -> None:
    groups = target_groups(
        {
            "items": [
                pod("b", "10.245.0.3", app="pulpocon-app", version="v2.0.0"),
                pod("pending", None, app="pulpocon-app"),
                pod("a", "10.245.0.2", **{"app.kubernetes.io/name": "x"}),
            ]
        }
    )
    assert [g["targets"] for g in groups] == [["10.245.0.2"], ["10.245.0.3"]]
    labels = groups[1]["labels"]
    assert labels[f"{META}namespace"] == "demo"
    assert labels[f"{META}pod_name"] == "b"
    assert labels[f"{META}pod_phase"] == "Running"
    assert labels[f"{META}pod_node_name"] == "real-node"
    assert labels[f"{META}pod_label_version"] == "v2.0.0"
    assert labels[f"{META}pod_annotation_prometheus_io_port"] == "9101"
    # Names are sanitised as Prometheus's own discovery does.
    assert groups[0]["labels"][f"{META}pod_label_app_kubernetes_io_name"] == "x"


def test_the_job_keeps_annotated_pods_on_their_metrics_port() -> None:
    job = PodDiscovery("https://127.0.0.1:6443", "ca.crt").scrape_config("1s")
    assert job["file_sd_configs"] == [{"files": ["pods.json"], "refresh_interval": "5s"}]
    rules = job["relabel_configs"]
    assert isinstance(rules, list)
    keep = rules[0]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    assert {"action": "labelmap", "regex": f"{META}pod_label_(.+)"} in rules
