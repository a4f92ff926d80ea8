"""The Helm chart: one source for its CRD and dashboard, `helm lint`, the rendered objects
in both RBAC scopes, the values schema, and the manifests accepted by the real API server
(`kubectl apply --dry-run=server`), whose RBAC grants the operator's ServiceAccount exactly
the chart's verbs."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from canaryctl.kube.crd import CRD_PATH
from canaryctl.testenv import ClusterState, binaries
from chart.helm import CHART, by_kind, helm, helm_fails, render, service_account_client, set_args
from helpers import REPO

#: The operator's verbs by (apiGroup, resource), read from its code (see the chart's
#: _helpers.tpl): the chart must grant exactly these, nothing more.
OPERATOR_VERBS = {
    ("canaryctl.dev", "canaries"): {"get", "list", "watch", "patch"},
    ("canaryctl.dev", "canaries/status"): {"update", "patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "create", "patch", "delete"},
    ("", "pods"): {"list"},
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"create"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "ingresses"): {"get", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "patch"},
    ("gateway.networking.k8s.io", "referencegrants"): {"list"},
    ("networking.istio.io", "virtualservices"): {"get", "patch"},
    ("networking.istio.io", "destinationrules"): {"get"},
}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule or rule["resources"] == ["leases"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# --- static -----------------------------------------------------------------------------


def test_the_chart_ships_the_packages_crd_and_dashboard_unchanged() -> None:
    assert (CHART / "files" / CRD_PATH.name).read_text() == CRD_PATH.read_text(), (
        "charts/canaryctl/files has a stale CRD: copy src/canaryctl/crds/ into it"
    )
    dashboard = REPO / "src" / "canaryctl" / "dashboards" / "canaryctl.json"
    assert (CHART / "files" / "canaryctl.json").read_text() == dashboard.read_text()
    (crd,) = by_kind(render(), "CustomResourceDefinition")
    assert crd["spec"] == yaml.safe_load(CRD_PATH.read_text())["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_helm_lint_passes_in_both_scopes() -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART))
    out = helm("lint", "--strict", str(CHART), *set_args({"watchNamespaces": ["a", "b"]}))
    assert "0 chart(s) failed" in out


def test_cluster_scope_grants_the_operators_verbs_with_one_cluster_role() -> None:
    docs = render()
    (role,) = by_kind(docs, "ClusterRole")
    assert grants(role["rules"]) == OPERATOR_VERBS
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "canaryctl", "namespace": "canaryctl-system"}
    ]
    # the Lease is the only thing granted in the release's namespace, by name
    (lease_role,) = by_kind(docs, "Role")
    assert lease_role["metadata"]["namespace"] == "canaryctl-system"
    assert grants(lease_role["rules"]) == {
        ("coordination.k8s.io", "leases"): {"create", "get", "update"}
    }
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--lease-name=canaryctl" in args and not any(a.startswith("--namespace") for a in args)


def test_namespaced_scope_grants_the_same_verbs_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render(watchNamespaces=["team-a", "team-b"], routers=["replicas"])
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert set(roles) == {"team-a", "team-b", "canaryctl-system"}
    routers_only = {k: v for k, v in OPERATOR_VERBS.items() if "networking" not in k[0]}
    assert grants(roles["team-a"]["rules"]) == routers_only
    bindings = {b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")}
    assert bindings == set(roles)
    (dep,) = by_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_metrics_service_monitor_and_dashboard_configmap() -> None:
    docs = render(metrics={"port": 8080, "serviceMonitor": {"enabled": True, "labels": {"r": "x"}}})
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics"}]
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["r"] == "x"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # `namespace` is the canary's
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = REPO / "src" / "canaryctl" / "dashboards" / "canaryctl.json"
    assert cm["data"]["canaryctl.json"] == dashboard.read_text().rstrip("\n")
    assert not by_kind(render(), "ServiceMonitor")  # off by default


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"routers": ["nginx"]}, "routers"),  # replicas is always needed
        ({"routers": ["replicas", "linkerd"]}, "routers"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"replicas": 2}, "replicas"),  # a typo of replicaCount
    ],
)
def test_the_values_schema_refuses_bad_values_naming_the_field(
    values: dict[str, Any], field: str
) -> None:
    err = helm_fails("template", "canaryctl", str(CHART), *set_args(values))
    assert "values don't meet the specifications of the schema" in err
    assert field in err


# --- the real API server ----------------------------------------------------------------


def kubectl_apply(cluster: ClusterState, manifests: str, *extra: str) -> str:
    kubectl = binaries.ensure(names=("kubectl",))["kubectl"]
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-", *extra],
        input=manifests, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def template(release_ns: str, **values: Any) -> str:
    return helm(
        "template", "canaryctl", str(CHART), "-n", release_ns,
        *set_args({"crds": {"install": False}, **values}),
    )  # fmt: skip


@pytest.mark.integration
def test_the_api_server_accepts_the_manifests_in_both_scopes(
    local_cluster: ClusterState, namespace: str
) -> None:
    for values in ({}, {"watchNamespaces": [namespace]}):
        out = kubectl_apply(local_cluster, template(namespace, **values), "--dry-run=server")
        assert "deployment.apps/canaryctl created (server dry run)" in out
    # the CRD as the chart renders it (the cluster already has it: applied as a change)
    crd_only = helm("template", "canaryctl", str(CHART), "--show-only", "templates/crd.yaml")
    assert "canaries.canaryctl.dev" in kubectl_apply(local_cluster, crd_only, "--dry-run=server")


@pytest.mark.integration
def test_the_service_account_gets_its_verbs_in_watched_namespaces_only(
    kube: Client, local_cluster: ClusterState, namespace: str
) -> None:
    """Namespaced scope, real RBAC: the operator's identity reads and writes what it owns in
    its namespace, and is refused cluster-wide and in a namespace it does not watch."""
    kubectl_apply(local_cluster, template(namespace, watchNamespaces=[namespace]))
    sa = service_account_client(kube, local_cluster.kubeconfig, "canaryctl", namespace)
    list(sa.list(Secret, namespace=namespace))
    list(sa.list(Deployment, namespace=namespace))
    for forbidden in (
        lambda: list(sa.list(Secret, namespace="*")),  # Secrets cluster-wide
        lambda: list(sa.list(Deployment, namespace="kube-system")),
        lambda: list(sa.list(Namespace)),
        lambda: sa.get(Secret, "anything", namespace="default"),
    ):
        with pytest.raises(ApiError) as err:
            forbidden()
        assert err.value.status.code == 403


@pytest.mark.integration
def test_cluster_scope_lets_the_service_account_watch_every_namespace_and_nothing_more(
    kube: Client, local_cluster: ClusterState, namespace: str
) -> None:
    name = f"canaryctl-{namespace}"  # cluster-wide objects: one per test run
    out = helm(
        "template", name, str(CHART), "-n", namespace,
        *set_args({"crds": {"install": False}, "dashboard": {"enabled": False}}),
    )  # fmt: skip
    try:
        kubectl_apply(local_cluster, out)
        sa = service_account_client(kube, local_cluster.kubeconfig, name, namespace)
        list(sa.list(Secret, namespace="*"))
        list(sa.list(Deployment, namespace="*"))
        with pytest.raises(ApiError) as err:
            list(sa.list(Namespace))
        assert err.value.status.code == 403
        with pytest.raises(ApiError) as err:
            list(sa.list(ClusterRole))
        assert err.value.status.code == 403
    finally:
        kube.delete(ClusterRoleBinding, name)
        kube.delete(ClusterRole, name)


def test_the_packaged_chart_renders_as_the_directory_and_is_indexed(tmp_path) -> None:
    """`make chart-package`'s steps: the archive renders exactly as the chart directory,
    carries the Python package's version (the image tag defaults to it), and the index
    lists it with its digest, ready for `helm repo add` or `helm push`."""
    import hashlib
    from importlib.metadata import version

    helm("package", str(CHART), "-d", str(tmp_path))
    archive = tmp_path / f"canaryctl-{version('canaryctl')}.tgz"
    assert archive.exists(), sorted(p.name for p in tmp_path.iterdir())
    chart = yaml.safe_load(helm("show", "chart", str(archive)))
    assert chart["version"] == chart["appVersion"] == version("canaryctl")
    args = ["-n", "canaryctl-system", "--set-json", 'watchNamespaces=["team-a"]']
    assert helm("template", "canaryctl", str(archive), *args) == helm(
        "template", "canaryctl", str(CHART), *args
    )
    helm("repo", "index", str(tmp_path))
    index = yaml.safe_load((tmp_path / "index.yaml").read_text())
    (entry,) = index["entries"]["canaryctl"]
    assert entry["version"] == version("canaryctl")
    assert entry["digest"] == hashlib.sha256(archive.read_bytes()).hexdigest()
