"""Read one key of a Secret, for credentials that must not live in specs or logs."""

from __future__ import annotations

import base64
from collections.abc import Callable

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret

from canaryctl.errors import ClusterError


def getter(client: Client, namespace: str) -> Callable[[str, str], bytes]:
    """A function (name, key) -> bytes reading Secrets of one namespace."""

    def read(name: str, key: str) -> bytes:
        try:
            secret = client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            raise ClusterError(
                f"reading secret/{name} in {namespace}: {exc.status.message}"
            ) from exc
        data = secret.data or {}
        if key not in data:
            raise ClusterError(f"secret/{name} in {namespace} has no key {key!r}")
        return base64.b64decode(data[key])

    return read
