"""Managed mode's pure parts: what counts as a new version, and the primary's shape."""

from __future__ import annotations

import pytest

from canaryctl.errors import SpecError
from canaryctl.operator import autoscalers, configs, managed, owned, services
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
    assert spec == configs.with_config_copies(_target()["spec"]["template"], "h")["spec"]
    assert spec["containers"][0]["image"] == "app:1"


def test_the_primary_reads_copies_of_every_config_for_its_version_and_nothing_else_changes() -> (
    None
):
    template = _target()["spec"]["template"]
    template["spec"]["volumes"].append(
        {"name": "p", "projected": {"sources": [{"secret": {"name": "certs"}}]}}
    )
    copied = configs.with_config_copies(template, "0123456789abcdef")
    assert configs.config_refs(copied) == {
        (kind, f"{name}-primary-0123456789") for kind, name in configs.config_refs(template)
    }
    assert ("Secret", "certs-primary-0123456789") in configs.config_refs(copied)
    # another version reads other objects: a copy a running pod reads is never rewritten
    other = configs.with_config_copies(template, "fedcba9876543210")
    assert not configs.config_refs(other) & configs.config_refs(copied)
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
    body = configs.config_copy("Secret", source, "app", owner, "0123456789abcdef")
    assert body["metadata"]["name"] == "app-token-primary-0123456789"
    assert body["metadata"]["labels"][owned.PRIMARY_OF] == "app"
    assert body["immutable"] is True
    assert configs.is_our_copy(body, "app") and not configs.is_our_copy(body, "other")
    assert not configs.is_our_copy(source, "app")  # a user's object of that name
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


# --- HorizontalPodAutoscalers -----------------------------------------------------------


def _hpa(name: str = "app", target: str = "app", low: int = 2, high: int = 5) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {"team": "a"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
    }


def test_the_primary_hpa_is_the_users_spec_scaling_the_primary_and_marked_ours() -> None:
    owner = owned.Owner("canaryctl.dev/v1alpha1", "Canary", "app", "uid-1")
    body = autoscalers.primary_hpa(_hpa(), "app", owner)
    assert body["metadata"]["name"] == "app-primary"
    spec, user = body["spec"], _hpa()["spec"]
    assert spec["scaleTargetRef"] == {**user["scaleTargetRef"], "name": "app-primary"}
    for key in ("minReplicas", "maxReplicas", "metrics", "behavior"):
        assert spec[key] == user[key]
    assert owned.is_ours(body, "app") and body["metadata"]["labels"]["team"] == "a"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    # the mirror is never taken for a user's HPA of the target
    assert autoscalers.target_hpas([_hpa(), body, _hpa("x", "other")], "app") == [_hpa()]


def test_a_mirror_in_step_is_not_written_and_a_changed_user_hpa_is() -> None:
    body = autoscalers.primary_hpa(_hpa(), "app", None)
    stored = {**body, "spec": {**body["spec"], "behavior": {
        "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max"},
        "scaleUp": {"stabilizationWindowSeconds": 0}}}}  # fmt: skip  # server defaults
    assert autoscalers._same(stored, body)
    assert not autoscalers._same(stored, autoscalers.primary_hpa(_hpa(high=9), "app", None))
    assert not autoscalers._same(stored, autoscalers.primary_hpa(_hpa(low=1), "app", None))


def test_an_hpa_on_the_target_is_refused_with_the_replicas_router_by_name() -> None:
    autoscalers.refuse_with_replicas_router([_hpa()], "app", "nginx")
    autoscalers.refuse_with_replicas_router([], "app", "replicas")
    with pytest.raises(SpecError) as err:
        autoscalers.refuse_with_replicas_router([_hpa("web")], "app", "replicas")
    assert err.value.field == "router.kind" and "horizontalpodautoscaler/web" in str(err.value)


def test_cache_wakes_the_canary_whose_target_or_primary_an_hpa_scales() -> None:
    cache = Cache()
    key = cache.put_canary({
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "app"}, "service": "app"},
    })  # fmt: skip
    assert cache.put_hpa(_hpa()) == {key}
    assert cache.put_hpa(autoscalers.primary_hpa(_hpa(), "app", None)) == {key}
    assert cache.put_hpa(_hpa("x", "other")) == set()
    assert {h["metadata"]["name"] for h in cache.hpas_in("ns")} == {"app", "app-primary", "x"}
    assert cache.put_hpa(_hpa(), deleted=True) == {key}
    assert {h["metadata"]["name"] for h in cache.hpas_in("ns")} == {"app-primary", "x"}
