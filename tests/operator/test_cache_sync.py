"""The start-up gate: nobody acts before every watched kind's initial list is in the cache
(a referenced ConfigMap that only looks missing would change the template hash and start a
spurious rollout). Pure bookkeeping of `Cache`; the operator process is tested on the
real cluster."""

from __future__ import annotations

from canaryctl.operator.cache import SYNCED_KINDS, Cache


def _obj(ns: str, name: str, **extra: object) -> dict[str, object]:
    return {"metadata": {"namespace": ns, "name": name}, **extra}


def _list_all(cache: Cache, **found: set[tuple[str, str]]) -> None:
    for kind in SYNCED_KINDS:
        cache.expect(kind, found.get(kind, set()))


def test_nothing_is_synced_before_every_kind_was_listed() -> None:
    cache = Cache()
    assert set(cache.pending()) == set(SYNCED_KINDS)
    cache.expect("Canary", set())
    assert "Canary" not in cache.pending() and "Secret" in cache.pending()
    _list_all(cache)
    assert cache.pending() == {}


def test_a_listed_config_counts_only_once_the_watch_showed_it() -> None:
    cache = Cache()
    _list_all(cache, ConfigMap={("ns", "conf")}, Deployment={("ns", "app")})
    assert cache.pending() == {"ConfigMap": 1, "Deployment": 1}
    cache.put_deployment(_obj("ns", "app", spec={}))
    assert cache.pending() == {"ConfigMap": 1}
    cache.put_config("Secret", _obj("ns", "conf", data={}))  # another kind, same name
    assert cache.pending() == {"ConfigMap": 1}
    cache.put_config("ConfigMap", _obj("ns", "conf", data={"a": "1"}))
    assert cache.pending() == {}


def test_objects_the_watch_showed_before_the_list_or_deleted_meanwhile_count() -> None:
    cache = Cache()
    cache.put_canary(_obj("ns", "seen", spec={}))  # the watch was faster than the list
    cache.put_config("Secret", _obj("ns", "gone", data={}))
    cache.put_config("Secret", _obj("ns", "gone"), deleted=True)  # deleted before the list
    cache.put_deployment(_obj("ns", "later-gone", spec={}), deleted=True)
    _list_all(
        cache,
        Canary={("ns", "seen")},
        Secret={("ns", "gone")},
        Deployment={("ns", "later-gone"), ("ns", "app")},
    )
    assert cache.pending() == {"Deployment": 1}
    cache.put_deployment(_obj("ns", "app", spec={}), deleted=True)  # deleted after the list
    assert cache.pending() == {}


def test_a_relist_forgets_what_no_longer_exists() -> None:
    """An object deleted between our list and the watch's own is never shown: listing that
    kind again (what the operator does after a while) unblocks the gate."""
    cache = Cache()
    _list_all(cache, ConfigMap={("ns", "vanished")})
    assert cache.pending() == {"ConfigMap": 1}
    cache.expect("ConfigMap", set())
    assert cache.pending() == {}


def test_the_operator_neither_acts_nor_is_ready_before_the_lists_are_in() -> None:
    """Operator wiring without a cluster (nothing is started): the scheduler's `acting`
    gate and /readyz follow the start-up sync, whatever the leader election says."""
    from lightkube import Client, KubeConfig

    from canaryctl.operator.controller import Operator, Options

    config = KubeConfig.from_dict({  # an address never contacted here
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    })  # fmt: skip
    op = Operator(Client(config), Options(metrics_port=None, health_port=None))
    op.elector.acting = lambda: True  # type: ignore[method-assign]  # as if it led
    op.elector.in_contact = lambda: True  # type: ignore[method-assign]
    assert not op.acting()
    ok, why = op._readiness()
    assert not ok and "Secret (not listed yet)" in why
    _list_all(op.cache, ConfigMap={("ns", "conf")})
    ok, why = op._readiness()
    assert not ok and "ConfigMap (1 to come)" in why
    op.cache.put_config("ConfigMap", _obj("ns", "conf", data={}))
    assert op.cache.pending() == {}
    op.ready = True  # what main() sets once _sync returns
    assert op.acting() and op._readiness() == (True, "watches synced; API server answering")
    op.scheduler.shutdown()
    op.recorder.close()
