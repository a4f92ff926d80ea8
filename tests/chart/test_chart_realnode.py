"""The chart on the real node: `helm install` of the operator image built here (no
registry), two pods Ready and one leader, a managed canary that promotes through a
`helm upgrade` and rolls a bad image back, all as the chart's ServiceAccount in the
namespaced RBAC scope, then `helm uninstall` with the workloads still serving."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Pod, Secret
from lightkube.types import PatchType

from canaryctl.dashboards.generate import PANELS
from canaryctl.kube.canary import Canary
from canaryctl.testenv import ClusterState, LocalCluster, images, operator_image
from canaryctl.testenv.dataplane import REAL_POD_PLACEMENT
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from chart.helm import CHART, helm, service_account_client, set_args
from helpers import replicas, wait_until
from realnode import (
    ECHO_SOURCE,
    apply,
    cluster_ip,
    echo_template,
    kubectl,
    split,
    wait_programmed,
)

pytestmark = [pytest.mark.dataplane, pytest.mark.integration, pytest.mark.prometheus]
#: RBAC scope of the install: "namespaced" (the default, least privilege) or "cluster"
#: (`make test-chart-cluster`: the same flow with the ClusterRole).
SCOPE = os.environ.get("CANARYCTL_CHART_SCOPE", "namespaced")
CLI = str(Path(sys.executable).with_name("canaryctl"))
RELEASE = "canaryctl"
CRD = "canaries.canaryctl.dev"


def app(image: str, version: str) -> dict[str, Any]:
    """The GitOps'd app: `app` behind Service `app`; managed mode needs the `track` label."""
    labels = {"app": "app", "track": "main"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": echo_template(labels, image, version),
        },
    }


def bump(kube: Client, ns: str, image: str, version: str) -> None:
    """What Flux or Argo CD do: a new image (and its version) in the target's template."""
    container = {"name": "echo", "image": image, "env": [{"name": "VERSION", "value": version}]}
    patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
    kube.patch(Deployment, "app", patch, namespace=ns, patch_type=PatchType.STRATEGIC)


def status(kube: Client, ns: str) -> dict[str, Any]:
    return dict(kube.get(Canary, "app", namespace=ns).status or {})


def image_of(kube: Client, ns: str, name: str) -> str:
    return kube.get(Deployment, name, namespace=ns).spec.template.spec.containers[0].image


def operator_pods(kube: Client, ns: str) -> list[Pod]:
    selector = {"app.kubernetes.io/name": "canaryctl", "app.kubernetes.io/instance": RELEASE}
    return [p for p in kube.list(Pod, namespace=ns, labels=selector)
            if p.metadata.deletionTimestamp is None]  # fmt: skip


def ready(pod: Pod) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def leader(kube: Client, ns: str) -> str | None:
    """The pod holding the Lease (its identity is `<pod name>/<pid>`)."""
    try:
        holder = kube.get(Lease, RELEASE, namespace=ns).spec.holderIdentity
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return holder.rsplit("/", 1)[0] if holder else None


def adopt_crd(kube: Client, release_ns: str) -> None:
    """The test bed installed the CRD already: let the release adopt it (Helm's ownership
    labels), as a user does who applied it by hand before installing the chart."""
    meta = {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {
            "meta.helm.sh/release-name": RELEASE,
            "meta.helm.sh/release-namespace": release_ns,
        },
    }
    kube.patch(CustomResourceDefinition, CRD, {"metadata": meta}, patch_type=PatchType.MERGE)


def operator_panels_answer(kube: Client, release_ns: str, ns: str) -> None:
    """The dashboard's operator panels, queried on a real Prometheus scraping the operator
    pods mid-rollout: each returns a series for the canary (the judge e-values panel
    only once a sequential judge runs, which this rollout has not; that panel is checked
    against a live operator in tests/integration/test_operator_dashboard.py)."""
    pods = [p.status.podIP for p in operator_pods(kube, release_ns)]
    targets = [ScrapeTarget(f"{ip}:8080") for ip in pods]
    server = PrometheusServer(targets).start()
    try:
        for panel in PANELS:
            if panel.source != "operator" or "e-values" in panel.title:
                continue
            for query in panel.queries:
                expr = query.expr.replace("$namespace", ns).replace("$canary", "app")

                def answer(e: str = expr) -> list[Any]:
                    body = httpx.post(f"{server.url}/api/v1/query", data={"query": e}).json()
                    return body["data"]["result"]

                result = wait_until(answer, timeout=30, interval=1)
                if panel.title == "Canary weight":
                    assert [float(r["value"][1]) for r in result] == [50.0], result
                if panel.title == "Phase":
                    assert [r["metric"]["phase"] for r in result] == ["Paused"], result
    finally:
        server.stop()


def test_helm_install_upgrade_and_uninstall_run_a_managed_canary_on_the_real_node(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> None:
    kube, ns, state = dataplane_kube, dataplane_namespace, dataplane_cluster
    cluster = LocalCluster(state.name)
    image = operator_image.build()
    cluster.load_image(image)
    echo = {tag: images.build_image(ECHO_SOURCE, "echo", tag) for tag in ("v1", "v2")}
    for built in echo.values():
        cluster.load_image(built)
    release_ns = f"canaryctl-{uuid.uuid4().hex[:6]}"
    kube.create(Namespace(metadata=ObjectMeta(name=release_ns)))
    repository, tag = image.ref.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "watchNamespaces": [ns] if SCOPE == "namespaced" else [],
        "routers": ["replicas"],
        "operator": {"interval": 1, "leaseSeconds": 6},
        **REAL_POD_PLACEMENT,
    }
    kubeconfig = Path(state.kubeconfig)
    installed = False
    try:
        adopt_crd(kube, release_ns)
        helm("install", RELEASE, str(CHART), "-n", release_ns, "--wait", "--timeout", "180s",
             *set_args(values), kubeconfig=kubeconfig)  # fmt: skip
        installed = True
        pods = operator_pods(kube, release_ns)
        assert len(pods) == 2 and all(ready(p) for p in pods)
        names = {p.metadata.name for p in pods}
        assert wait_until(lambda: leader(kube, release_ns), timeout=30) in names

        # the app, managed by a Canary: the operator creates app-primary, which serves
        apply(kube, ns, app(echo["v1"].ref, "v1"), {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"},
            "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": "http"}]},
        })  # fmt: skip
        spec = {
            "targetRef": {"kind": "Deployment", "name": "app"},
            "service": "app",
            "steps": [{"setWeight": 50}, {"pause": {}}],
            "health": {"readyDeadline": "20s"},
        }
        kube.create(Canary(metadata=ObjectMeta(name="app", namespace=ns), spec=spec))
        wait_until(lambda: replicas(kube, ns, "app-primary") == (2, 2), timeout=60)
        wait_until(lambda: replicas(kube, ns, "app") == (0, 0), timeout=30)

        # an image bump starts a rollout; it pauses at 50% with both versions answering
        bump(kube, ns, echo["v2"].ref, "v2")
        wait_until(lambda: status(kube, ns).get("phase") == "Paused", timeout=90)
        # the primary's pod that went away at 50% first finishes terminating (the echo
        # server has no preStop delay: the proxy may still pick it while it stops)
        wait_until(lambda: len(list(kube.list(Pod, namespace=ns))) == 2, timeout=60)
        # and kube-proxy's rules no longer jump to it (CI once sent 1 of 30 requests to the
        # gone pod: on a busy node kube-proxy syncs after the pod object is deleted)
        wait_programmed(state, kube, ns, "app", 2)
        url = f"http://{cluster_ip(kube, 'app', ns)}/"
        versions, failed = split(url, 30)
        assert failed == 0 and set(versions) == {"v1", "v2"}, versions
        operator_panels_answer(kube, release_ns, ns)

        # helm upgrade mid-rollout: new operator pods, a new leader, the rollout goes on
        helm("upgrade", RELEASE, str(CHART), "-n", release_ns, "--wait", "--timeout", "180s",
             *set_args({**values, "podAnnotations": {"upgraded": "1"}}),
             kubeconfig=kubeconfig)  # fmt: skip
        new = {p.metadata.name for p in operator_pods(kube, release_ns)}
        assert new and not new & names
        wait_until(lambda: leader(kube, release_ns) in new, timeout=60)
        assert status(kube, ns).get("phase") == "Paused" and status(kube, ns)["weight"] == 50
        promote = subprocess.run(
            [CLI, "promote", "app", "-n", ns, "--kubeconfig", str(kubeconfig)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert promote.returncode == 0, promote.stderr
        wait_until(lambda: status(kube, ns).get("phase") == "Succeeded", timeout=90)
        wait_until(lambda: image_of(kube, ns, "app-primary") == echo["v2"].ref, timeout=30)
        wait_until(lambda: replicas(kube, ns, "app-primary") == (2, 2), timeout=60)

        # a bad image (never pullable) rolls back; the primary keeps serving v2
        bump(kube, ns, "canaryctl.local/echo:missing", "v3")
        wait_until(lambda: status(kube, ns).get("phase") == "RolledBack", timeout=90)
        assert image_of(kube, ns, "app-primary") == echo["v2"].ref
        assert replicas(kube, ns, "app-primary") == (2, 2)

        # all of it as the chart's ServiceAccount: nothing refused in the operator's logs,
        # and outside its Role the same identity is refused
        logs = kubectl(state, "logs", "-n", release_ns, "--all-containers", "--prefix",
                       "-l", "app.kubernetes.io/instance=canaryctl")  # fmt: skip
        assert "forbidden" not in logs.lower(), logs
        sa = service_account_client(kube, kubeconfig, RELEASE, release_ns)
        with pytest.raises(ApiError) as err:
            if SCOPE == "namespaced":
                list(sa.list(Secret, namespace="*"))  # Secrets cluster-wide
            else:
                list(sa.list(Namespace))  # the ClusterRole grants no Namespaces
        assert err.value.status.code == 403

        # helm uninstall: the operator goes, the workloads keep serving
        helm("uninstall", RELEASE, "-n", release_ns, "--wait", kubeconfig=kubeconfig)
        installed = False
        wait_until(lambda: not operator_pods(kube, release_ns), timeout=60)
        versions, failed = split(url, 20)
        assert failed == 0 and set(versions) == {"v2"}, versions
        assert replicas(kube, ns, "app-primary") == (2, 2)
        kube.get(CustomResourceDefinition, CRD)  # kept (helm.sh/resource-policy: keep)
    finally:
        if installed:
            helm("uninstall", RELEASE, "-n", release_ns, "--wait", kubeconfig=kubeconfig)
        # No operator is left to finalize the Canary: let it go with its namespace.
        try:
            patch = {"metadata": {"finalizers": None}}
            kube.patch(Canary, "app", patch, namespace=ns, patch_type=PatchType.MERGE)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        kube.delete(Namespace, release_ns)
