"""Managed mode's pure parts: what counts as a new version, and the primary's shape."""

from __future__ import annotations

import pytest

from canaryctl.errors import SpecError
from canaryctl.operator import configs, managed, owned, services
from canaryctl.operator.cache import Cache
from canaryctl.operator.reconciler import engine_spec


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
    refs = configs.config_refs(_target()["spec"]["template"])
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
    assert configs.data_checksum(one) == configs.data_checksum(two)
    assert configs.data_checksum({**one, "data": {"k": "w"}}) != configs.data_checksum(one)


def test_primary_pods_are_told_apart_by_a_selector_key_the_service_does_not_use() -> None:
    body = managed.primary_manifest(
        _target(), service_selector={"app": "app"}, replicas=3, hash_="h", checksum="c",
        owner=owned.Owner("canaryctl.dev/v1alpha1", "Canary", "app", "uid-1"),
    )  # fmt: skip
    assert body["metadata"]["name"] == "app-primary"
    assert body["spec"]["selector"]["matchLabels"] == {"app": "app", "track": "main-primary"}
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "app", "track": "main-primary", "team": "a"}
    assert body["spec"]["replicas"] == 3
    assert body["metadata"]["annotations"][managed.TEMPLATE_HASH] == "h"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    # the copy is the target's template, reading the primary's copies of its configs
    spec = body["spec"]["template"]["spec"]
    assert spec == configs.with_config_copies(_target()["spec"]["template"])["spec"]
    assert spec["containers"][0]["image"] == "app:1"


def test_the_primary_reads_copies_of_every_config_and_nothing_else_changes() -> None:
    template = _target()["spec"]["template"]
    template["spec"]["volumes"].append(
        {"name": "p", "projected": {"sources": [{"secret": {"name": "certs"}}]}}
    )
    copied = configs.with_config_copies(template)
    assert configs.config_refs(copied) == {
        (kind, f"{name}-primary") for kind, name in configs.config_refs(template)
    }
    assert ("Secret", "certs-primary") in configs.config_refs(copied)
    assert copied["metadata"] == template["metadata"]
    assert configs.config_refs(template) == configs.config_refs(_target()["spec"]["template"]) | {
        ("Secret", "certs")
    }  # the target's own template is left as it was


def test_a_config_copy_has_the_data_the_owner_and_the_label_for_cleanup() -> None:
    source = {
        "metadata": {"name": "app-token", "namespace": "ns", "resourceVersion": "7",
                     "uid": "u", "labels": {"team": "a"}},
        "type": "Opaque",
        "data": {"t": "c2VjcmV0"},
    }  # fmt: skip
    owner = owned.Owner("canaryctl.dev/v1alpha1", "Canary", "app", "uid-1")
    body = configs.config_copy("Secret", source, "app", owner)
    assert body["metadata"]["name"] == "app-token-primary"
    assert body["metadata"]["labels"][owned.PRIMARY_OF] == "app"
    assert body["data"] == source["data"] and body["type"] == "Opaque"
    assert "resourceVersion" not in body["metadata"] and "uid" not in body["metadata"]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


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


def test_the_users_selector_is_what_it_was_before_pointing_it_at_the_primary() -> None:
    svc = {
        "metadata": {"annotations": {services.PRIMARY_SELECTOR: "track"}},
        "spec": {"selector": {"app": "app", "track": "main"}},  # as repointed at promotion
    }
    assert services.user_selector(svc) == {"app": "app"}
    assert services.user_selector({"spec": {"selector": {"app": "app"}}}) == {"app": "app"}


def _managed_canary(router: dict) -> dict:
    return {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "app"}, "service": "app",
                 "router": router, "steps": [{"setWeight": 50}]},
    }  # fmt: skip


@pytest.mark.parametrize(
    "router",
    [
        {"kind": "nginx", "ingress": "app"},
        {"kind": "istio", "virtualService": "app"},
        {"kind": "gateway", "httproute": "app"},
    ],
)
def test_managed_mode_runs_with_each_weight_router_primary_as_stable(router: dict) -> None:
    spec = engine_spec(_managed_canary(router))
    assert (spec.stable, spec.canary, spec.router.kind) == ("app-primary", "app", router["kind"])
    assert spec.on_promotion == "scale-to-zero"  # the operator copies the template over


def test_managed_mode_refuses_destination_rule_subsets_naming_the_field() -> None:
    router = {"kind": "istio", "virtualService": "app", "destinationRule": "app"}
    with pytest.raises(SpecError) as err:
        engine_spec(_managed_canary(router))
    assert err.value.field == "router.destinationRule"
