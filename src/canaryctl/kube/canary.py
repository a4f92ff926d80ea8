"""The `Canary` custom resource (canaries.canaryctl.dev/v1alpha1) as a lightkube class.

`Canary` is a namespaced generic resource with a `Canary.Status` subresource class;
`spec_of(obj)` turns a Canary object (or its mapping) into the validated `CanarySpec`
that `rollout -f` would build from the same YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from canaryctl.core.models import CanarySpec, parse_spec
from canaryctl.errors import SpecError

GROUP = "canaryctl.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Canary"
PLURAL = "canaries"
SINGULAR = "canary"
SHORT_NAMES = ("cny",)
CRD_NAME = f"{PLURAL}.{GROUP}"

#: The lightkube resource class: `client.get(Canary, name, namespace=ns)`,
#: `client.replace(Canary.Status(...))` for the status subresource.
Canary = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


def as_mapping(obj: Any) -> dict[str, Any]:
    """A Canary object (lightkube generic resource or plain mapping) as a plain dict."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"not a Canary object: {type(obj).__name__}")


def flat_spec(obj: Any) -> dict[str, Any]:
    """The Canary's `.spec` plus `name` and `namespace` from its metadata (unvalidated)."""
    data = as_mapping(obj)
    meta = data.get("metadata") or {}
    spec = data.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec", "a Canary needs a spec mapping")
    flat: dict[str, Any] = {**spec, "name": meta.get("name")}
    if meta.get("namespace"):
        flat["namespace"] = meta["namespace"]
    return flat


def spec_of(obj: Any) -> CanarySpec:
    """The validated spec of a Canary object; SpecError names the field, as the CLI does."""
    return parse_spec(flat_spec(obj))
