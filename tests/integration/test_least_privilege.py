"""Least privilege: the CLI drives whole rollouts with every router as a ServiceAccount bound
to deploy/rbac's Role (a real TokenRequest token, so the API server's RBAC decides), and
every request it makes is recorded: none is refused, and the verbs used are exactly the
table in canaryctl.kube.rbac. Outside the Role the same identity is refused. Secrets the
rollout reads never show up in anything it prints or stores."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Secret, ServiceAccount

from canaryctl.kube import rbac
from canaryctl.kube.store import Store
from canaryctl.routers import _patch  # noqa: F401  (registers the routing CRDs for codecs)
from canaryctl.testenv import ClusterState
from helpers import REPO, app_deployment, app_service, replicas, route_objects, wait_until

pytestmark = pytest.mark.integration
RECORDER = Path(__file__).with_name("cli_recorder.py")
ROUTERS = {
    "replicas": {"kind": "replicas"},
    "nginx": {"kind": "nginx", "ingress": "app"},
    "istio": {"kind": "istio", "virtualService": "app", "destinationRule": "app"},
    "gateway": {"kind": "gateway", "httproute": "app"},
}
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


def test_committed_rbac_files_are_generated_from_the_table() -> None:
    for name, text in rbac.files().items():
        committed = (REPO / "deploy" / "rbac" / name).read_text()
        assert committed == text, f"deploy/rbac/{name} is stale: python -m canaryctl.kube.rbac"


def verb_of(line: dict[str, Any]) -> tuple[str, str, str] | None:
    """(group, resource, verb) of one recorded API request; None for non-resource paths."""
    match = _PATH.match(line["path"])
    if match is None:
        return None
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    method = line["method"]
    if method == "GET":
        verb = "get" if match["name"] else ("watch" if "watch=" in line["query"] else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return match["group"] or "", resource, verb


def service_account_kubeconfig(
    kube: Client, cluster: ClusterState, namespace: str, folder: Path, scope: str = "namespace"
) -> Path:
    """deploy/rbac's objects for `namespace`, and a kubeconfig holding a bound token of
    their ServiceAccount (TokenRequest API): requests are authorized by RBAC, not by us."""
    for doc in rbac.render(scope, namespace):
        if scope == "cluster" and doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] = f"canaryctl-{namespace}"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] = f"canaryctl-{namespace}"
        kube.create(codecs.from_dict(doc), namespace=doc["metadata"].get("namespace"))
    request = ServiceAccount.Token(
        metadata=ObjectMeta(name=rbac.NAME, namespace=namespace),
        spec=TokenRequestSpec(audiences=[], expirationSeconds=3600),
    )
    token = kube.create(request, rbac.NAME, namespace=namespace).status.token
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "canaryctl", "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {
                    "cluster": admin["clusters"][0]["name"],
                    "user": "canaryctl",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "sa",
    }
    path = folder / f"sa-{namespace}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


class Cli:
    """`canaryctl` as a recorded subprocess under one kubeconfig."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(RECORDER), str(self.log), *args,
                "--kubeconfig", str(self.kubeconfig)]  # fmt: skip

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def _scene(kube: Client, namespace: str, router: str) -> None:
    docs = [app_service(), app_deployment("app-v1", "v1", 2), app_deployment("app-v2", "v2", 0)]
    if router != "replicas":
        docs += route_objects(router)
    for doc in docs:
        kube.create(codecs.from_dict(doc), namespace=namespace)
    wait_until(lambda: replicas(kube, namespace, "app-v1") == (2, 2), timeout=60)


def _spec_file(folder: Path, namespace: str, router: str, **extra: Any) -> Path:
    spec = {
        "name": "app",
        "namespace": namespace,
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "router": ROUTERS[router],
        "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}],
        "health": {"readyDeadline": "30s"},
        "drainDelay": "0s",
        **extra,
    }
    path = folder / f"{router}-{namespace}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def namespaces(kube: Client):
    """Fresh namespaces made on demand, deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        kube.create(Namespace(metadata=ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        kube.delete(Namespace, name)


def stored_status(kube: Client, namespace: str) -> dict[str, Any]:
    """The rollout's stored status, read with the test's admin client (not recorded)."""
    record = Store(kube).get("app", namespace)
    return (record.status if record else None) or {}


def _wait_paused(kube: Client, proc: subprocess.Popen[str], namespace: str) -> None:
    def paused() -> bool:
        assert proc.poll() is None, f"rollout exited early: {proc.communicate()}"
        return stored_status(kube, namespace).get("phase") == "Paused"

    wait_until(paused, timeout=60, interval=0.5)


def test_whole_rollouts_with_every_router_as_the_service_account_use_exactly_the_role(
    kube: Client,
    local_cluster: ClusterState,
    installed_crds: list[str],
    namespaces,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    clis: dict[str, tuple[Cli, str, subprocess.Popen[str]]] = {}
    for router in ROUTERS:
        ns = namespaces()
        _scene(kube, ns, router)
        cli = Cli(service_account_kubeconfig(kube, local_cluster, ns, tmp_path),
                  tmp_path / f"{router}.log")  # fmt: skip
        spec = _spec_file(tmp_path, ns, router)
        plan = cli.run("plan", "-f", str(spec))
        assert plan.returncode == 0, plan.stderr
        proc = cli.start("rollout", "-f", str(spec), "-o", "json", "--interval", "0.2")
        clis[router] = (cli, ns, proc)
    for router, (cli, ns, proc) in clis.items():
        _wait_paused(kube, proc, ns)
        for args in (("get", "-n", ns), ("get", "app", "-n", ns, "-o", "json")):
            shown = cli.run(*args)
            assert shown.returncode == 0, f"{router}: {shown.stderr}"
        sent = cli.run("promote", "app", "-n", ns)
        assert sent.returncode == 0, f"{router}: {sent.stderr}"
    used: dict[str, set[tuple[str, str, str]]] = {}
    for router, (cli, ns, proc) in clis.items():
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"{router}: exit {proc.returncode}\n{err}\n{out[-2000:]}"
        assert replicas(kube, ns, "app-v2") == (2, 2)
        refused = [r for r in cli.requests() if r["status"] in (401, 403)]
        assert not refused, f"{router}: refused as the ServiceAccount: {refused}"
        used[router] = {v for r in cli.requests() if (v := verb_of(r)) is not None}
        # Every verb the router's rollout used is in its part of the table, and every
        # verb its part lists (outside rules for special cases) was used.
        allowed = rbac.verbs([router])
        assert used[router] <= allowed, f"{router}: not in the table: {used[router] - allowed}"
        unused = rbac.verbs([router], always=True) - used[router]
        assert not unused, f"{router}: in the table but never used: {unused}"
    print(f"4 rollouts as the ServiceAccount in {time.monotonic() - started:.1f}s")


def test_the_service_account_is_refused_outside_its_role(
    kube: Client, local_cluster: ClusterState, namespaces, tmp_path: Path
) -> None:
    ns, other = namespaces(), namespaces()
    for where in (ns, other):
        _scene(kube, where, "replicas")
        kube.create(
            Secret(metadata=ObjectMeta(name="db-password"), stringData={"password": "x"}),
            namespace=where,
        )
    config = service_account_kubeconfig(kube, local_cluster, ns, tmp_path)
    from canaryctl.kube.client import make_client

    sa = make_client(config)

    def refused(call) -> bool:
        try:
            call()
        except ApiError as exc:
            return exc.status.code == 403
        return False

    assert refused(lambda: sa.get(Secret, "db-password", namespace=ns)), "unnamed Secret"
    assert refused(lambda: list(sa.list(Secret, namespace=ns))), "listing Secrets"
    assert refused(lambda: sa.get(Deployment, "app-v1", namespace=other)), "other namespace"
    scale = {"spec": {"replicas": 5}}
    assert refused(lambda: sa.patch(Deployment, "app-v1", scale, namespace=other))
    record = ConfigMap(metadata=ObjectMeta(name="x"), data={})
    assert refused(lambda: sa.create(record, namespace=other))
    assert refused(lambda: list(sa.list(Namespace))), "cluster-scoped reads"
    assert refused(lambda: sa.delete(Secret, "db-password", namespace=ns))
    # A rollout aimed at another namespace fails cleanly: a clear message, no traceback,
    # and nothing changed there.
    cli = Cli(config, tmp_path / "other.log")
    done = cli.run("rollout", "-f", str(_spec_file(tmp_path, other, "replicas")), "-o", "json")
    assert done.returncode == 1, done
    assert "forbidden" in done.stderr.lower() and "Traceback" not in done.stderr, done.stderr
    assert replicas(kube, other, "app-v1") == (2, 2)
    assert replicas(kube, other, "app-v2") == (0, 0)
    assert not [
        cm for cm in kube.list(ConfigMap, namespace=other) if "canaryctl" in cm.metadata.name
    ]


def test_secrets_never_appear_in_output_events_or_stored_state(
    kube: Client, local_cluster: ClusterState, namespaces, tmp_path: Path
) -> None:
    """A rollout reads a Prometheus bearer token from a Secret (named in the Role); the token
    is in no output line, no `get` output, no Event, no stored record."""
    ns = namespaces()
    _scene(kube, ns, "replicas")
    token = f"tok-{uuid.uuid4().hex}"
    secret = Secret(
        metadata=ObjectMeta(name=rbac.EXAMPLE_SECRETS[0]),
        data={"token": base64.b64encode(token.encode()).decode()},
    )
    kube.create(secret, namespace=ns)
    cli = Cli(service_account_kubeconfig(kube, local_cluster, ns, tmp_path), tmp_path / "s.log")
    analysis = {
        # Nothing listens there: the rollout reads the token for every look, never
        # promotes on the missing data, and is aborted by the test.
        "prometheus": {
            "url": "http://127.0.0.1:9",
            "auth": {"secretRef": {"name": rbac.EXAMPLE_SECRETS[0], "key": "token"}},
        },
        "interval": "1s",
    }
    spec = _spec_file(tmp_path, ns, "replicas", analysis=analysis)
    proc = cli.start("rollout", "-f", str(spec), "-o", "json", "--interval", "0.2")
    outputs: list[str] = []
    try:
        wait_until(lambda: stored_status(kube, ns).get("lastVerdict"), timeout=60, interval=0.5)
        time.sleep(2)  # a few failed looks, each with the token in its request
        for args in (("get", "app", "-n", ns, "-o", "json"), ("get", "app", "-n", ns),
                     ("get", "-n", ns), ("get", "app", "-n", ns, "--history")):  # fmt: skip
            done = cli.run(*args)
            assert done.returncode == 0, done.stderr
            outputs += [done.stdout, done.stderr]
        assert cli.run("abort", "app", "-n", ns).returncode == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, err
    outputs += [out, err]
    outputs += [e.message or "" for e in kube.list(Event, namespace=ns)]
    outputs += [json.dumps(cm.to_dict()) for cm in kube.list(ConfigMap, namespace=ns)]
    secret_reads = [r for r in cli.requests() if "/secrets/" in r["path"]]
    assert secret_reads and all(r["status"] == 200 for r in secret_reads), "the token was used"
    leaks = [text for text in outputs if token in text]
    assert not leaks, f"the Secret's token leaked: {[t[:300] for t in leaks]}"
