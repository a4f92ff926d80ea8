"""Hypothesis strategies for hostile input: JSON values of every type, huge numbers, unicode,
1 MB strings, and canary specs with any field replaced, added or removed."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import strategies as st

#: A 1 MB string, built once (hypothesis would take long to draw one).
MEGABYTE = "x" * 2**20
SPECIAL: list[Any] = [
    10**100, -(10**100), 2**63, -(2**63) - 1, 2**31, -1, 0, 1, 100, 101,
    float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 1e-300, 0.5, 99.99,
    MEGABYTE, "", " ", "\x00", "\u202eevil", "💥" * 500, "ü" * 10_000,
    "1e309", "9" * 400, "9" * 400 + "s", "30s", "1h30m", "-5s", "0s", "auto", "NaN",
    "deploy/", "svc/x", "A" * 300, "a" * 64, "nginx", "istio", "gateway", "replicas",
    "promote", "abort", "http://", "http://127.0.0.1:9", "file:///etc/passwd",
    True, False, None, [], {}, [None], {"": None}, {"pause": {}},
]  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    # Copied: a drawn `{}` or `[]` may be edited by later mutations of the spec.
    | st.sampled_from(SPECIAL).map(copy.deepcopy)
)
#: Any JSON value (and YAML's non-JSON floats): nested up to a few levels.
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=10,
)

#: A valid spec using every field, so mutations reach every validator.
BASE: dict[str, Any] = {
    "name": "app",
    "namespace": "fuzz",
    "stable": "app-v1",
    "canary": "app-v2",
    "service": "app",
    "router": {"kind": "istio", "virtualService": "app", "destinationRule": "app",
               "header": {"X-Track": "canary"}, "cookie": "tester", "mirror": 20},
    "steps": [{"setCanaryScale": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 10},
              {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}],
    "health": {"readyDeadline": "2m", "maxRestarts": 1, "stableMinReadyRatio": 0.9},
    "replicaMode": "full",
    "onPromotion": "scale-to-zero",
    "maxWeight": 60,
    "scaleDownDelay": "10m",
    "drainDelay": "5s",
    "analysis": {
        "prometheus": {"url": "http://prometheus:9090", "timeout": 5,
                       "auth": {"secretRef": {"name": "prom", "key": "token"}}},
        "judge": "threshold",
        "interval": "10s",
        "tolerance": 0.1,
        "latencyThreshold": 0.5,
        "latencyQuantile": 0.95,
        "perPod": True,
        "webhooks": [{"name": "gate", "type": "confirm-promotion", "url": "http://gate/",
                      "timeout": "5s", "retries": 1, "metadata": {"k": "v"}}],
    },
}  # fmt: skip
FIELDS = sorted(
    {"name", "namespace", "stable", "canary", "service", "router", "steps", "health",
     "replicaMode", "onPromotion", "maxWeight", "scaleDownDelay", "drainDelay", "analysis",
     "canaryNamespace", "targetRef", "kind", "ingress", "virtualService", "destinationRule",
     "httproute", "header", "cookie", "mirror", "setWeight", "setCanaryScale", "pause",
     "duration", "readyDeadline", "maxRestarts", "prometheus", "url", "auth", "secretRef",
     "judge", "interval", "webhooks", "type", "timeout", "retries", "metadata", "alpha",
     "minInterval", "maxInterval", "podLabel", "bearerTokenFile", "scheme", "key"}
)  # fmt: skip


def _containers(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every mapping and list inside `value` (itself included)."""
    found = []
    if isinstance(value, dict):
        found.append(path)
        for key, item in value.items():
            found += _containers(item, (*path, key))
    elif isinstance(value, list):
        found.append(path)
        for index, item in enumerate(value):
            found += _containers(item, (*path, index))
    return found


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def specs(draw: st.DrawFn, base: dict[str, Any] = BASE) -> Any:
    """`base` with 1-4 random edits: a field replaced by any JSON value, a field (known
    name or random text) added, a field removed; sometimes no mapping at all."""
    if draw(st.integers(0, 30)) == 0:
        return draw(JSON)
    spec = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        where = _at(spec, draw(st.sampled_from(_containers(spec))))
        op = draw(st.sampled_from(["replace", "add", "remove"]))
        if isinstance(where, list):
            if op == "remove" and where:
                where.pop(draw(st.integers(0, len(where) - 1)))
            elif op == "replace" and where:
                where[draw(st.integers(0, len(where) - 1))] = draw(JSON)
            else:
                where.append(draw(JSON))
        elif op == "remove" and where:
            where.pop(draw(st.sampled_from(sorted(where, key=str))))
        elif op == "replace" and where:
            where[draw(st.sampled_from(sorted(where, key=str)))] = draw(JSON)
        else:
            where[draw(st.sampled_from(FIELDS) | st.text(max_size=12))] = draw(JSON)
    return spec


ODD_YAML = ["", "---\n---\n", "[]", "a: [", "!!python/object:os.system {}", "&a [*a]",
            "key: !!binary AAAA", "? [1]\n: 2", "\t", "~", "spec:\nmetadata: 1"]  # fmt: skip
YAML_TEXT = (
    st.text(max_size=200)
    | specs().map(lambda s: yaml.safe_dump(s, allow_unicode=True))
    | specs().map(
        lambda s: yaml.safe_dump(
            {"apiVersion": "canaryctl.dev/v1alpha1", "kind": "Canary", "spec": s}
        )
    )
    | st.builds(
        lambda kind, meta, spec: yaml.safe_dump({"kind": kind, "metadata": meta, "spec": spec}),
        JSON,
        JSON,
        JSON,
    )
    | st.sampled_from(ODD_YAML)
)

ODD_TEXT = [s for s in SPECIAL if isinstance(s, str)]
TEXT_FLAG = st.none() | st.text(max_size=30) | st.sampled_from(ODD_TEXT)
FLOAT_FLAG = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def quick_flags(draw: st.DrawFn) -> dict[str, Any]:
    """The rollout command's quick-mode options, each any string (or number) a shell can pass."""
    return {
        "name": draw(TEXT_FLAG),
        "namespace": draw(TEXT_FLAG),
        "stable": draw(TEXT_FLAG | st.just("deploy/app-v1")),
        "canary": draw(TEXT_FLAG | st.just("deploy/app-v2")),
        "service": draw(TEXT_FLAG | st.just("svc/app")),
        "steps": draw(st.text(max_size=30) | st.sampled_from(["10,50,100", "0", ",,", "9" * 400])),
        "pause": draw(TEXT_FLAG),
        "ready_deadline": draw(TEXT_FLAG),
        "max_restarts": draw(st.none() | st.integers()),
        "on_promotion": draw(st.text(max_size=20) | st.just("delete")),
        "replica_mode": draw(TEXT_FLAG),
        "scale_down_delay": draw(TEXT_FLAG),
        "drain_delay": draw(TEXT_FLAG),
        "canary_namespace": draw(TEXT_FLAG),
        "router": draw(st.sampled_from(["replicas", "nginx", "istio", "gateway", "", "x"])),
        "ingress": draw(TEXT_FLAG),
        "virtual_service": draw(TEXT_FLAG),
        "destination_rule": draw(TEXT_FLAG),
        "httproute": draw(TEXT_FLAG),
        "header": draw(st.none() | st.lists(st.text(max_size=20), max_size=3)),
        "cookie": draw(TEXT_FLAG),
        "mirror": draw(FLOAT_FLAG),
        "prometheus": draw(TEXT_FLAG),
        "judge": draw(st.sampled_from(["sequential", "threshold"]) | st.text(max_size=10)),
        "analysis_interval": draw(st.text(max_size=10) | st.just("10s")),
        "tolerance": draw(FLOAT_FLAG),
        "latency_threshold": draw(FLOAT_FLAG),
    }
