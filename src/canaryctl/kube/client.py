"""The one way canaryctl builds a Kubernetes API client (lightkube, used everywhere)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG
from lightkube.core.exceptions import ConfigError

from canaryctl.errors import ClusterError, ConflictError, WriteDenied

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


def unreachable(exc: BaseException) -> ClusterError:
    """The one message for a command that found the API server unreachable (`is_transient`)."""
    return ClusterError(
        f"cannot reach the API server ({exc}); check --kubeconfig/--context, or start a "
        "local cluster with `canaryctl testenv up`"
    )


#: Statuses of a write refused on its merits: admission (a ValidatingAdmissionPolicy answers
#: 422 Invalid by default, a webhook 403 Forbidden), field validation, RBAC.
DENIED_STATUSES = frozenset({403, 422})


def _texts(exc: Any) -> list[str]:
    """The message of an ApiError's Status and of each of its causes."""
    status = exc.status
    texts = [str(getattr(status, "message", "") or "")]
    details = getattr(status, "details", None)
    for cause in getattr(details, "causes", None) or ():
        texts.append(str(getattr(cause, "message", "") or ""))
    return [t for t in texts if t]


#: What the API server answers (422, reason Invalid, no details) when a JSON patch cannot be
#: applied to the stored object: a `test` op that does not hold, or a path that is gone.
#: The patch library's own words ("testing value ... failed: test failed") are dropped.
PATCH_NOT_APPLICABLE = "the server rejected our request due to an error in our request"


def is_failed_test(exc: Any) -> bool:
    """Whether a 422 is the API server's answer to a JSON patch that no longer applies (a
    `test` op that did not hold: the guarded value changed, a race like a 409), not a
    refusal of the change (admission and validation name the object and the reason)."""
    if exc.status.code != 422:
        return False
    texts = _texts(exc)
    return any(t.startswith(PATCH_NOT_APPLICABLE) or "test failed" in t for t in texts)


def write_error(exc: Any, what: str) -> ClusterError:
    """The error for a refused write to `what` (e.g. "deployment/app in ns"), one mapping
    for every writer: a race (409, a failed `test` op) is a ConflictError, decided again
    at once; a refusal on the merits (403, any other 422: admission policy or webhook,
    validation, RBAC) is WriteDenied with the server's own message (it names the policy);
    anything else a ClusterError."""
    code = exc.status.code
    if code == 409 or is_failed_test(exc):
        return ConflictError(f"{what} changed meanwhile")
    texts = _texts(exc)
    message = texts[0] if texts else f"HTTP {code}"
    if code in DENIED_STATUSES:
        # A VAP puts the policy's message in the cause too: the longest text says most.
        return WriteDenied(what, max(texts, key=len) if texts else message, code)
    return ClusterError(f"writing {what}: {message}")


def denial_of(exc: BaseException) -> WriteDenied | None:
    """The WriteDenied that `exc` is or wraps (a ClusterError raised from an ApiError 403
    or 422 that is not a failed `test` op), or None."""
    from lightkube.core.exceptions import ApiError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, WriteDenied):
            return current
        if isinstance(current, ApiError):
            error = write_error(current, _object_of(exc, current))
            return error if isinstance(error, WriteDenied) else None
        current = current.__cause__ or current.__context__
    return None


def _object_of(outer: BaseException, api: Any) -> str:
    """The object a refused request was about: from the Status details, else the message
    of the error that wrapped it (which names it)."""
    details = getattr(api.status, "details", None)
    kind, name = getattr(details, "kind", None), getattr(details, "name", None)
    if kind and name:
        return f"{kind}/{name}"
    return str(outer) if outer is not api else "an object"


def load_kubeconfig(path: str | Path) -> KubeConfig:
    """`KubeConfig.from_file`, parsed with libyaml when PyYAML has it (it nearly always does).

    The pure-Python parser that `from_file` uses takes about 100 ms on a 60-KB kubeconfig
    (ten contexts with embedded certificates, common on a laptop), more than the rest of a
    `canaryctl get`; libyaml reads it in a few ms.
    """
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"Configuration file {path} not found")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(file.read_text(), Loader=loader)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a kubeconfig (a YAML mapping)")
    try:
        return KubeConfig.from_dict(data, fname=file)
    except KeyError as exc:
        raise ConfigError(f"{path} has no {exc.args[0]!r} section") from exc


def make_client(kubeconfig: str | Path | None = None, context: str | None = None) -> Client:
    """A client from an explicit kubeconfig, $KUBECONFIG, in-cluster config or ~/.kube/config."""
    import yaml

    try:
        if kubeconfig is not None:
            config = load_kubeconfig(kubeconfig)
        elif os.environ.get("KUBECONFIG"):
            config = load_kubeconfig(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        else:
            # KubeConfig.from_env's order, with the faster file parser.
            try:
                config = KubeConfig.from_service_account()
            except ConfigError:
                config = load_kubeconfig(DEFAULT_KUBECONFIG)
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        raise ClusterError(
            f"no usable kubeconfig ({exc}); pass --kubeconfig, set KUBECONFIG, "
            "or start a local cluster with `canaryctl testenv up`"
        ) from exc
    single = config.get(context_name=context) if context else config
    if single is None:
        raise ClusterError(f"kubeconfig has no context named {context!r}")
    return Client(single, field_manager=FIELD_MANAGER)
