"""Managed mode's pure parts: what counts as a new version, and the primary's shape."""

from __future__ import annotations

import pytest

from canaryctl.errors import SpecError
from canaryctl.operator import managed
from canaryctl.operator.cache import Cache


def _target(image: str = "app:1", env_from: str | None = "app-config") -> dict:
    container: dict = {"name": "app", "image": image}
    if env_from:
        container["envFrom"] = [{"configMapRef": {"name": env_from}}]
        container["env"] = [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-token", "key": "t"}}}
        ]
    return {
        "metadata": {"name": "app", "namespace": "ns", "labels": {"app": "app"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "app", "track": "main"}},
            "template": {
                "metadata": {"labels": {"app": "app", "track": "main", "team": "a"}},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "v", "configMap": {"name": "files"}}],
                },
            },
        },
    }


def test_config_refs_finds_env_envfrom_and_volumes() -> None:
    refs = managed.config_refs(_target()["spec"]["template"])
    assert refs == {("ConfigMap", "app-config"), ("Secret", "app-token"), ("ConfigMap", "files")}


def test_a_new_image_or_a_changed_config_is_a_new_version_and_nothing_else_is() -> None:
    template = _target()["spec"]["template"]
    sums = {("ConfigMap", "app-config"): "a", ("Secret", "app-token"): "b"}
    base = managed.template_hash(template, sums)
    assert managed.template_hash(_target()["spec"]["template"], dict(sums)) == base
    assert managed.template_hash(_target("app:2")["spec"]["template"], sums) != base
    assert managed.template_hash(template, {**sums, ("Secret", "app-token"): "c"}) != base
    # a config nobody references does not matter
    assert managed.template_hash(template, {**sums, ("ConfigMap", "other"): "x"}) == base


def test_data_checksum_changes_with_data_only() -> None:
    one = {"metadata": {"name": "c", "resourceVersion": "1"}, "data": {"k": "v"}}
    two = {"metadata": {"name": "c", "resourceVersion": "2"}, "data": {"k": "v"}}
    assert managed.data_checksum(one) == managed.data_checksum(two)
    assert managed.data_checksum({**one, "data": {"k": "w"}}) != managed.data_checksum(one)


def test_primary_pods_are_told_apart_by_a_selector_key_the_service_does_not_use() -> None:
    body = managed.primary_manifest(
        _target(), service_selector={"app": "app"}, replicas=3, hash_="h", checksum="c",
        owner=managed.Owner("canaryctl.dev/v1alpha1", "Canary", "app", "uid-1"),
    )  # fmt: skip
    assert body["metadata"]["name"] == "app-primary"
    assert body["spec"]["selector"]["matchLabels"] == {"app": "app", "track": "main-primary"}
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "app", "track": "main-primary", "team": "a"}
    assert body["spec"]["replicas"] == 3
    assert body["metadata"]["annotations"][managed.TEMPLATE_HASH] == "h"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    # the copy is the target's template: same containers
    assert body["spec"]["template"]["spec"] == _target()["spec"]["template"]["spec"]


def test_a_target_selected_only_by_service_keys_is_refused_naming_target_ref() -> None:
    with pytest.raises(SpecError) as err:
        managed.primary_manifest(
            _target(), service_selector={"app": "app", "track": "main"}, replicas=1,
            hash_="h", checksum="c", owner=None,
        )  # fmt: skip
    assert err.value.field == "targetRef"


def test_cache_wakes_the_canaries_that_read_a_config() -> None:
    cache = Cache()
    canary = {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "app"}, "service": "app"},
    }
    key = cache.put_canary(canary)
    assert cache.put_deployment(_target()) == {key}
    assert cache.put_deployment({"metadata": {"name": "app-primary", "namespace": "ns"}}) == {key}
    assert cache.put_deployment({"metadata": {"name": "other", "namespace": "ns"}}) == set()
    config = {"metadata": {"name": "app-config", "namespace": "ns"}, "data": {"a": "1"}}
    assert cache.put_config("ConfigMap", config) == {key}
    assert cache.put_config("ConfigMap", config) == set()  # same data: nobody to wake
    assert cache.put_config("ConfigMap", {**config, "data": {"a": "2"}}) == {key}
    unread = {**config, "metadata": {"name": "x", "namespace": "ns"}}
    assert cache.put_config("ConfigMap", unread) == set()
    cache.drop_canary(key)
    assert cache.put_deployment(_target()) == set()
