"""The one way canaryctl builds a Kubernetes API client (lightkube, used everywhere)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ConfigError

from canaryctl.errors import ClusterError

#: Field manager for server-side apply and the managedFields of every write we make.
FIELD_MANAGER = "canaryctl"


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP library's transport errors (lightkube 1.x uses httpx2, 0.x httpx)."""
    # Only the library lightkube loaded (importing it already did): importing httpx just to
    # name its errors would, with click installed, also load httpx's CLI and rich (slow start).
    loaded = [sys.modules[m] for m in ("httpx2", "httpx") if m in sys.modules]
    if not loaded:
        for module in ("httpx2", "httpx"):
            with contextlib.suppress(ImportError):
                loaded.append(__import__(module))
    return tuple(m.TransportError for m in loaded if hasattr(m, "TransportError"))


#: Errors of an unreachable API server (refused, timed out, TLS): `except TRANSPORT_ERRORS`.
TRANSPORT_ERRORS = _transport_errors()


#: HTTP statuses of an API server that is (re)starting, overloaded or losing etcd.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or an error it wraps) is an outage worth retrying, not a refusal.

    Transport errors (connection refused or reset, timeouts, TLS) and 429/5xx answers are;
    403, 404, 409, 422 and the like are answers about the request and are not.
    """
    from lightkube.core.exceptions import ApiError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if TRANSPORT_ERRORS and isinstance(current, TRANSPORT_ERRORS):
            return True
        if isinstance(current, ApiError) and current.status.code in TRANSIENT_STATUSES:
            return True
        current = current.__cause__ or current.__context__
    return False


def make_client(kubeconfig: str | Path | None = None, context: str | None = None) -> Client:
    """A client from an explicit kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster config."""
    try:
        if kubeconfig is not None:
            config = KubeConfig.from_file(Path(kubeconfig).expanduser())
        elif os.environ.get("KUBECONFIG"):
            config = KubeConfig.from_file(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        else:
            config = KubeConfig.from_env()
    except (ConfigError, OSError) as exc:
        raise ClusterError(
            f"no usable kubeconfig ({exc}); pass --kubeconfig, set KUBECONFIG, "
            "or start a local cluster with `canaryctl testenv up`"
        ) from exc
    single = config.get(context_name=context) if context else config
    if single is None:
        raise ClusterError(f"kubeconfig has no context named {context!r}")
    return Client(single, field_manager=FIELD_MANAGER)
