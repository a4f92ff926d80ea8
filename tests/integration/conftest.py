"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest
from lightkube import Client

from canaryctl.testenv import crds


@pytest.fixture(scope="module")
def installed_crds(kube: Client) -> list[str]:
    """The routing CRDs (Istio, Gateway API) installed on the session's cluster."""
    return crds.install(kube, progress=lambda _: None)
