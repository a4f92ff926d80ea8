"""`canaryctl get` without a name: one line per rollout, fast, kubectl-style.

Listing is what a person types most often (and what a shell prompt or a `watch` runs), so
it reads only what the table shows, straight from the API objects: no spec validation,
no rollout models, no rich. Both record kinds are listed: Canary resources (the operator)
and `canaryctl rollout` ConfigMaps. `canaryctl get NAME` gives the full explanation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError

from canaryctl.errors import ClusterError

COLUMNS = ("NAMESPACE", "NAME", "SOURCE", "PHASE", "STEP", "WEIGHT", "REASON", "DRIVER")


@dataclass(frozen=True)
class Summary:
    """One row of the list: what `kubectl get canaries` would print, for both kinds."""

    namespace: str
    name: str
    source: str
    phase: str
    step: str
    weight: str
    reason: str
    driver: str

    def cells(self) -> tuple[str, ...]:
        return (self.namespace, self.name, self.source, self.phase, self.step, self.weight,
                self.reason, self.driver)  # fmt: skip


def _step(status: Mapping[str, Any], steps: int | None) -> str:
    index = int(status.get("stepIndex", 0)) + 1
    return f"{min(index, steps)}/{steps}" if steps else str(index)


def _reason(status: Mapping[str, Any]) -> str:
    """The latest transition's reason and what the rollout waits for now, e.g.
    `waiting for a promote command` (the machine's hold, kept in the status)."""
    reason, hold = str(status.get("reason") or ""), str(status.get("holdReason") or "")
    return (f"{reason}: {hold}" if reason and hold else reason or hold)[:80]


def _not_ready(conditions: Iterable[Mapping[str, Any]]) -> str:
    """The Ready condition's reason when it is not True (e.g. InvalidSpec), else ''."""
    for c in conditions:
        if c.get("type") == "Ready" and c.get("status") != "True":
            return f"{c.get('reason')}: {c.get('message', '')}"[:80]
    return ""


def canary_summary(obj: Mapping[str, Any]) -> Summary:
    """A row for a Canary resource (its mapping), from status fields only."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    steps = spec.get("steps")
    step = status.get("step") or _step(status, len(steps) if isinstance(steps, list) else None)
    return Summary(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        source="Canary",
        phase=status.get("phase") or "Pending",
        step=step,
        weight=f"{status.get('weight', 0)}%",
        # A Ready condition that is not True (an invalid spec, a denied write) explains
        # more than a hold, which it causes; a transition's reason comes first.
        reason=(status.get("reason") and _reason(status))
        or _not_ready(status.get("conditions") or ())
        or _reason(status),
        driver="operator",
    )


def configmap_summary(name: str, namespace: str, spec: Any, status: Any, holder: str | None):
    """A row for a `canaryctl rollout` record (its ConfigMap's spec and status)."""
    if status is not None and not isinstance(status, Mapping):
        # Edited by hand: list it, marked, rather than fail the whole listing (fuzzing).
        status = {"phase": "?", "reason": f"unreadable status ({type(status).__name__})"}
    status = status or {}
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    return Summary(
        namespace=namespace,
        name=name,
        source="ConfigMap",
        phase=status.get("phase") or "Pending",
        step=_step(status, len(steps) if isinstance(steps, list) else None),
        weight=f"{status.get('weight', 0)}%",
        reason=_reason(status),
        driver=holder or "-",
    )


def summaries(client: Client, namespace: str | None) -> list[Summary]:
    """Every rollout in a namespace (None: all), sorted; two list requests in all."""
    from canaryctl.kube.client import TRANSPORT_ERRORS, unreachable

    try:
        return _summaries(client, namespace)
    except TRANSPORT_ERRORS as exc:
        raise unreachable(exc) from exc


def _summaries(client: Client, namespace: str | None) -> list[Summary]:
    from canaryctl.kube.canary import Canary
    from canaryctl.kube.store import HOLDER, LABELS, PREFIX, ConfigMap

    ns = namespace or "*"
    rows: list[Summary] = []
    try:
        rows += [canary_summary(obj.to_dict()) for obj in client.list(Canary, namespace=ns)]
    except ApiError as exc:
        if exc.status.code != 404:  # 404: the CRD is not installed, so no Canaries
            raise ClusterError(f"listing canaries: {exc.status.message}") from exc
    try:
        cms = list(client.list(ConfigMap, namespace=ns, labels=LABELS))
    except ApiError as exc:
        raise ClusterError(f"listing canaryctl ConfigMaps: {exc.status.message}") from exc
    for cm in cms:
        data = cm.data or {}
        if not cm.metadata.name.startswith(PREFIX) or "spec" not in data:
            continue
        try:
            spec = json.loads(data["spec"])
            status = json.loads(data["status"]) if "status" in data else None
        except json.JSONDecodeError:
            spec, status = {}, {"phase": "?", "reason": "invalid JSON in the record"}
        holder = (cm.metadata.annotations or {}).get(HOLDER)
        name = cm.metadata.name[len(PREFIX) :]
        rows.append(configmap_summary(name, cm.metadata.namespace, spec, status, holder))
    return sorted(rows, key=lambda r: (r.namespace, r.name, r.source))


def format_table(rows: list[Summary], all_namespaces: bool) -> str:
    """Aligned columns like kubectl's; the namespace column only with -A."""
    first = 0 if all_namespaces else 1
    table = [COLUMNS[first:]] + [r.cells()[first:] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in table]  # fmt: skip
    return "\n".join(lines)
