"""The demos start from an empty namespace, whatever a previous run left in it."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, ServiceAccount

from canaryctl.cli import demo_dataplane

pytestmark = pytest.mark.integration


def test_fresh_namespace_replaces_a_left_over_one_and_has_its_service_account(
    kube: Client,
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        kube.create(ConfigMap(metadata=ObjectMeta(name="left-over")), namespace=name)
        old_uid = kube.get(Namespace, name).metadata.uid

        demo_dataplane.fresh_namespace(kube, name)

        assert kube.get(Namespace, name).metadata.uid != old_uid
        assert not list(kube.list(ConfigMap, namespace=name, fields={"metadata.name": "left-over"}))
        assert list(kube.list(ServiceAccount, namespace=name))
    finally:
        with contextlib.suppress(ApiError):
            kube.delete(Namespace, name)
