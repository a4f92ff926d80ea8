"""The Istio router's objects pass `istioctl analyze` at every step of a rollout.

There is no Envoy here, so no request goes through a VirtualService: what Istio itself
would say about them is the next best check. A whole rollout runs through the engine on
the real control plane with Istio's CRDs (weights, a header route for testers, mirroring,
promotion); every distinct state of the VirtualService and DestinationRule is written to
files next to the Service, the Deployments and the Namespace as they were at that moment,
and `istioctl analyze --use-kube=false` (istioctl built from the istio.io/istio module,
see `canaryctl.testenv.istioctl_build`) must report no error and no warning on any.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Service

from canaryctl.core.models import Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.routers._patch import DestinationRule, VirtualService
from canaryctl.testenv import istioctl_build
from helpers import app_deployment, app_service, app_spec, destination_rule
from routers.conftest import create

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_crds")]

ROUTING = [
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app"},
        "spec": {
            "hosts": ["app"],
            "http": [{"name": "main", "route": [{"destination": {"host": "app", "subset": "v1"}}]}],
        },
    },
    destination_rule(),
]
#: What the server adds and a user's manifest would not carry.
_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


@pytest.fixture(scope="session")
def istioctl() -> Path:
    """The pinned istioctl when it is built; its first build is too long for every test
    run, so `make istio-analyze` (or `make istioctl`) builds it and this test skips until then."""
    found = istioctl_build.find()
    if found is None:
        pytest.skip(
            f"istioctl is not built yet (no {istioctl_build.home() / 'bin' / 'istioctl'}): "
            "run `make istio-analyze` to build it and run this test"
        )
    return found


def _manifest(obj: Any) -> dict[str, Any]:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    data.pop("status", None)
    meta = data.get("metadata", {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    return data


class Snapshots:
    """The engine's sink: keeps each distinct state of the routing objects, with the
    Service, Deployments and Namespace as they were then."""

    def __init__(self, kube: Client, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.states: list[tuple[str, list[dict[str, Any]]]] = []
        self._seen: set[str] = set()

    def notice(self, notice: Any) -> None:
        pass

    def snapshot(self, snap: Any) -> None:
        ns = self.namespace
        routing = [
            _manifest(self.kube.get(VirtualService, "app", namespace=ns)),
            _manifest(self.kube.get(DestinationRule, "app", namespace=ns)),
        ]
        key = json.dumps([r["spec"] for r in routing], sort_keys=True)
        if key in self._seen:
            return
        self._seen.add(key)
        others = [
            _manifest(self.kube.get(Namespace, ns)),
            _manifest(self.kube.get(Service, "app", namespace=ns)),
        ]
        for name in ("app-v1", "app-v2"):
            with contextlib.suppress(ApiError):  # the old stable is deleted at promotion
                others.append(_manifest(self.kube.get(Deployment, name, namespace=ns)))
        label = f"{snap.phase} step {snap.step} weight {snap.desired_weight} {snap.stage or ''}"
        self.states.append((label.strip(), [*routing, *others]))


def analyze(
    istioctl: Path, folder: Path, namespace: str, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`istioctl analyze` of `docs` alone (no cluster) in `namespace`: its messages.

    The namespace matters: analyze looks at one namespace (`default` unless told), and
    objects of any other namespace in the files are silently left out."""
    folder.mkdir(parents=True)
    path = folder / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    proc = subprocess.run(
        [str(istioctl), "analyze", "--use-kube=false", "--namespace", namespace, "--output", "json",
         "--output-threshold", "Info", "--failure-threshold", "Warning", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        messages = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise AssertionError(f"istioctl analyze failed: {proc.stdout}\n{proc.stderr}") from None
    assert proc.returncode in (0, 79), (proc.returncode, proc.stderr)  # 79: warnings/errors
    return list(messages)


def test_istio_router_objects_pass_istioctl_analyze_at_every_step(
    kube: Client, namespace: str, istioctl: Path, tmp_path: Path
) -> None:
    create(kube, namespace, app_service(), app_deployment("app-v1", "v1", 2),
           app_deployment("app-v2", "v2", 0), *ROUTING)  # fmt: skip
    spec = parse_spec(
        app_spec(
            namespace,
            # Mirroring is a dark launch: on while the canary has capacity and weight 0.
            [
                {"setCanaryScale": 50},
                {"pause": "1s"},
                {"setWeight": 20},
                {"pause": "1s"},
                {"setWeight": 60},
                {"pause": "1s"},
            ],
            router={
                "kind": "istio",
                "virtualService": "app",
                "destinationRule": "app",
                "header": {"X-Track": "canary"},
                "mirror": 50,
            },
            drainDelay="1s",
        )
    )
    states = Snapshots(kube, namespace)
    status = Engine(kube, spec, sink=states, record_events=False).run(0.2)
    assert status.phase is Phase.SUCCEEDED, status.message

    weights = set()
    findings = {}
    for i, (label, docs) in enumerate(states.states):
        route = docs[0]["spec"]["http"]
        weights |= {d.get("weight", 100) for r in route for d in r["route"]}
        messages = analyze(istioctl, tmp_path / f"state-{i}", namespace, docs)
        print(f"{label}: {len(route)} routes, {[m['code'] for m in messages]}")
        bad = [m for m in messages if m["level"] in ("Error", "Warning")]
        if bad:
            findings[label] = bad
    assert not findings, json.dumps(findings, indent=1)
    # The same files with the route sent to a subset the DestinationRule lacks: analyze
    # must see them and object (an analysis that looked at nothing would pass above too).
    _, docs = states.states[-1]
    broken = json.loads(json.dumps(docs))
    broken[0]["spec"]["http"][-1]["route"][0]["destination"]["subset"] = "v9"
    codes = [m["code"] for m in analyze(istioctl, tmp_path / "broken", namespace, broken)]
    assert "IST0101" in codes, codes
    # The states covered the split, the header route and the mirror.
    assert {20, 80, 60, 40} <= weights, weights
    assert any(len(docs[0]["spec"]["http"]) == 2 for _, docs in states.states), "header route"
    assert any("mirror" in r for _, d in states.states for r in d[0]["spec"]["http"]), "mirror"
