"""Helpers for the chart's tests: helm from the cache (built from its Go module on first
use), rendering, and the ServiceAccount's own client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import ServiceAccount

from canaryctl.testenv import helm_build
from helpers import REPO

CHART = REPO / "charts" / "canaryctl"


def helm(*args: str, kubeconfig: Path | None = None, timeout: float = 180) -> str:
    """Run helm; fail the test with its output when it fails."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [str(helm_build.ensure()), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def helm_fails(*args: str) -> str:
    """Run helm expecting a failure; its error output."""
    proc = subprocess.run(
        [str(helm_build.ensure()), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0, f"helm {' '.join(args)} succeeded:\n{proc.stdout}"
    return proc.stderr


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json key=value` for every top-level value."""
    import json

    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


def render(namespace: str = "canaryctl-system", **values: Any) -> list[dict[str, Any]]:
    """The chart's manifests for these values (`helm template`)."""
    out = helm("template", "canaryctl", str(CHART), "-n", namespace, *set_args(values))
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def service_account_client(admin: Client, kubeconfig: Path, name: str, namespace: str) -> Client:
    """A client that authenticates as the ServiceAccount (a token from the TokenRequest API),
    so the API server's own RBAC decides each request."""
    from lightkube.models.authentication_v1 import TokenRequestSpec
    from lightkube.models.meta_v1 import ObjectMeta

    request = ServiceAccount.Token(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=TokenRequestSpec(audiences=[], expirationSeconds=600),
    )
    token = admin.create(request, name, namespace=namespace).status.token
    base = yaml.safe_load(Path(kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": base["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": base["clusters"][0]["name"], "user": "sa"}}
        ],
        "current-context": "sa",
    }
    return Client(KubeConfig.from_dict(config))
