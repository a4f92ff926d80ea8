"""The least privilege `canaryctl rollout|plan|get|promote|abort|pause|resume` need.

`RULES` is the one list of API verbs the CLI uses, per router; `deploy/rbac/` is generated
from it (`python -m canaryctl.kube.rbac deploy/rbac`), and a test runs whole rollouts with
every router as a ServiceAccount bound to exactly these rules, recording every request, so
a verb the code starts using (or stops using) fails the test until this table says so.

Secrets are the exception to "one table": which Secrets a rollout reads depends on its spec
(`analysis.prometheus.auth.secretRef`), so the Role grants `get` on the names given to
`render(secrets=...)` only, never `list` and never other names.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Name of the ServiceAccount, Role/ClusterRole and bindings in deploy/rbac.
NAME = "canaryctl"
#: Secret names the committed Role allows reading (rename them to yours, or regenerate).
EXAMPLE_SECRETS = ("canaryctl-prometheus",)


@dataclass(frozen=True)
class Rule:
    """Verbs on one resource, which routers need them, and why; `when` names the only
    case that uses them (empty: every rollout with those routers does)."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    routers: tuple[str, ...]
    why: str
    when: str = ""


ALL = ("replicas", "nginx", "istio", "gateway")
WEIGHT = ("nginx", "istio", "gateway")

RULES: tuple[Rule, ...] = (
    Rule("", "configmaps", ("get", "list", "create", "update"), ALL,
         "the rollout record canaryctl-<name>: spec, status, command, lease; `get` lists"),
    Rule("", "events", ("create",), ALL, "transitions as Events on the canary Deployment"),
    Rule("", "pods", ("list",), ALL, "health gates: readiness, restarts, crash loops"),
    Rule("", "services", ("get",), ALL, "the Service in front of both versions"),
    Rule("", "services", ("patch",), ("replicas", "nginx", "gateway"),
         "pin the Service's selector to one version while traffic leaves the other"),
    Rule("", "services", ("create", "delete"), ("nginx", "gateway"),
         "the canary Service a weight router sends weight to"),
    Rule("", "services", ("create", "patch", "delete"), ("istio",),
         "version Services when the VirtualService routes by host, not by subset",
         when="istio without a destinationRule"),
    Rule("apps", "deployments", ("get", "patch", "delete"), ALL,
         "scale both versions (JSON patch of spec.replicas); delete the old stable"),
    Rule("autoscaling", "horizontalpodautoscalers", ("list",), ALL,
         "validation: an HPA on either Deployment (replica router refuses; weight routers "
         "check the canary's can hold the stable's capacity)"),
    Rule("discovery.k8s.io", "endpointslices", ("list",), ALL,
         "effective weight and draining: which pods the Service lists as serving"),
    Rule("networking.k8s.io", "ingresses", ("get",), ("nginx",), "the primary Ingress"),
    Rule("networking.k8s.io", "ingresses", ("create", "patch", "delete"), ("nginx",),
         "the canary Ingress canaryctl owns (canary-weight, header/cookie)"),
    Rule("networking.istio.io", "virtualservices", ("get", "patch"), ("istio",),
         "route weights, tester and mirror routes"),
    Rule("networking.istio.io", "destinationrules", ("get",), ("istio",),
         "check the version subsets exist"),
    Rule("gateway.networking.k8s.io", "httproutes", ("get", "patch"), ("gateway",),
         "backendRef weights and tester rules"),
    Rule("gateway.networking.k8s.io", "referencegrants", ("list",), ("gateway",),
         "a cross-namespace canary needs a ReferenceGrant", when="cross-namespace canary"),
    Rule("canaryctl.dev", "canaries", ("get", "list", "patch"), ALL,
         "refuse to drive what a Canary resource owns; steer Canaries (promote/abort)"),
)  # fmt: skip


def verbs(routers: Sequence[str] = ALL, *, always: bool = False) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the given routers need, Secrets left out; with `always`,
    only those every rollout uses (rules without a `when`)."""
    return {
        (r.group, r.resource, verb)
        for r in RULES
        if set(r.routers) & set(routers) and not (always and r.when)
        for verb in r.verbs
    }


def policy_rules(secrets: Sequence[str] = EXAMPLE_SECRETS) -> list[dict[str, Any]]:
    """PolicyRules for every router: one per (group, resource), verbs sorted."""
    merged: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in verbs():
        merged.setdefault((group, resource), set()).add(verb)
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(vs)}
        for (group, resource), vs in sorted(merged.items())
    ]
    if secrets:
        rules.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": sorted(secrets),
                "verbs": ["get"],
            }
        )
    return rules


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "canaryctl"}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def render(
    scope: str = "namespace",
    namespace: str = "default",
    secrets: Sequence[str] = EXAMPLE_SECRETS,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role (or ClusterRole) and its binding, as manifests.

    scope "namespace": a Role and RoleBinding in `namespace` (rollouts there only);
    scope "cluster": a ClusterRole and ClusterRoleBinding (rollouts in any namespace,
    cross-namespace canaries included). The ServiceAccount lives in `namespace`.
    """
    if scope not in ("namespace", "cluster"):
        raise ValueError(f"scope must be namespace or cluster, not {scope!r}")
    cluster = scope == "cluster"
    role_kind = "ClusterRole" if cluster else "Role"
    role_ns = None if cluster else namespace
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {
            "apiVersion": rbac,
            "kind": role_kind,
            "metadata": _meta(NAME, role_ns),
            "rules": policy_rules(secrets),
        },
        {
            "apiVersion": rbac,
            "kind": f"{role_kind}Binding",
            "metadata": _meta(NAME, role_ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
    ]


HEADER = """\
# Generated by `python -m canaryctl.kube.rbac deploy/rbac` from canaryctl/kube/rbac.py
# (RULES): edit the table there, not this file. Least privilege for the canaryctl CLI
# (rollout, plan, get, promote, abort, pause, resume) with every router. Secrets: `get` on
# the names listed only; replace canaryctl-prometheus with the Secret your
# analysis.prometheus.auth.secretRef names, or remove that rule when you use none.
"""

FILES = {"role.yaml": "namespace", "clusterrole.yaml": "cluster"}


def files() -> dict[str, str]:
    """The committed deploy/rbac files: name -> YAML text."""
    import yaml

    return {
        name: HEADER + yaml.safe_dump_all(render(scope), sort_keys=False)
        for name, scope in FILES.items()
    }


def main(argv: Sequence[str]) -> int:
    """Write deploy/rbac/*.yaml into the folder given (default deploy/rbac)."""
    folder = Path(argv[0] if argv else "deploy/rbac")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (folder / name).write_text(text)
        print(folder / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
