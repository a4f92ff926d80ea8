"""The Canary CRD is generated from the models: the committed YAML must match them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryctl.cli.rollout import load_spec_file
from canaryctl.core.models import CanarySpec, CanaryStatus, parse_spec
from canaryctl.kube import crd
from helpers import EXAMPLES


def test_committed_crd_is_what_the_models_generate() -> None:
    assert crd.CRD_PATH.read_text() == crd.render(), (
        "the committed CRD differs from the models: run `python -m canaryctl.kube.crd`"
    )
    assert crd.main(["--check"]) == 0


def test_check_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render().replace("maxItems: 64", "maxItems: 65"))
    monkeypatch.setattr(crd, "CRD_PATH", stale)
    assert crd.main(["--check"]) == 1


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    root = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        untyped = node.get("x-kubernetes-int-or-string") or (
            node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node
        )
        assert "type" in node or untyped, f"{path or 'root'} has no type"
        for forbidden in ("anyOf", "oneOf", "allOf", "$ref", "const", "default", "title"):
            assert forbidden not in node, f"{path}: {forbidden} left in the schema"
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(
            node.get("exclusiveMinimum"), bool
        ):
            pytest.fail(f"{path}: exclusiveMinimum must be the OpenAPI 3.0 boolean form")


def test_every_spec_and_status_field_of_the_models_is_in_the_crd() -> None:
    version = crd.crd()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    spec_fields = {f.alias or name for name, f in CanarySpec.model_fields.items()}
    assert spec_fields - {"name", "namespace"} == set(schema["spec"]["properties"])
    status_fields = {f.alias or name for name, f in CanaryStatus.model_fields.items()}
    assert status_fields <= set(schema["status"]["properties"])
    assert {"observedGeneration", "conditions"} <= set(schema["status"]["properties"])
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase", "Weight", "Step", "Verdict", "Waiting", "Age",
    ]  # fmt: skip
    assert version["subresources"] == {"status": {}}


def test_crd_names() -> None:
    doc = yaml.safe_load(crd.CRD_PATH.read_text())
    assert doc["metadata"]["name"] == "canaries.canaryctl.dev"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("Canary", "canaries", ["cny"])
    assert doc["spec"]["scope"] == "Namespaced"
    assert [v["name"] for v in doc["spec"]["versions"]] == ["v1alpha1"]


@pytest.mark.parametrize("example", ["pulpocon-app.yaml", "managed.yaml"])
def test_example_canaries_are_valid_specs(example: str) -> None:
    path = EXAMPLES / "canary-resource" / example
    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("canaryctl.dev/v1alpha1", "Canary")
    parse_spec(load_spec_file(path, None))


def test_the_reference_documents_every_field_of_the_models() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "canary-resource.md").read_text()
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    documented = []
    for name, node in schema["spec"]["properties"].items():
        documented.append(name)
        documented += list(node.get("properties", {}))
    documented += list(schema["spec"]["properties"]["steps"]["items"]["properties"])
    documented += list(schema["status"]["properties"])
    missing = [name for name in documented if f"`{name}`" not in doc]
    assert not missing, f"docs/canary-resource.md does not mention {missing}"
