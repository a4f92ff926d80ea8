"""One error hierarchy for canaryctl; the CLI maps it to exit codes in one place."""

from __future__ import annotations


class CanaryError(Exception):
    """Base of every error canaryctl raises on purpose."""


#: Longest field name or reason a SpecError keeps: a message echoes the user's value, and
#: a 1 MB value must not become a 1 MB error line (found by fuzzing).
MAX_ECHO = 400


def _shorten(text: str) -> str:
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text)} characters)"


class SpecError(CanaryError):
    """Invalid user input; `field` names the offending field or object."""

    def __init__(self, field: str, reason: str) -> None:
        field, reason = _shorten(str(field)), _shorten(str(reason))
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NameTaken(SpecError):
    """An object canaryctl must create has a name already used by an object it did not
    make (never overwritten): refused like a bad spec, and looked at again later, since
    the fix (renaming or deleting that object) is no change of the Canary."""


class ClusterError(CanaryError):
    """The Kubernetes API refused or could not serve a request."""


class RolloutNotFound(ClusterError):
    """No rollout record (ConfigMap or Canary resource) of the given name."""


class ConflictError(ClusterError):
    """Another actor changed an object we were about to change."""


class WriteDenied(ClusterError):
    """The API server refused a write on its merits, not because of a race: an admission
    policy or webhook (a ValidatingAdmissionPolicy's 422 Invalid, a webhook's 403
    Forbidden), field validation or RBAC. Retrying at once gives the same answer, so the
    operator reports it (Event and condition naming `object` and the server's `reason`)
    and retries with a capped backoff, until someone changes the policy or the object.
    """

    def __init__(self, object_: str, reason: str, code: int) -> None:
        object_, reason = _shorten(object_), _shorten(reason)
        super().__init__(f"writing {object_} was denied ({code}): {reason}")
        self.object = object_
        self.reason = reason
        self.code = code


class ApiUnreachable(ClusterError):
    """The API server stayed unreachable (refused, timed out, 5xx, 429) past the API timeout.

    Nothing is lost: every decision is stored before it is acted on, so the rollout's
    state is in the cluster and the same command resumes it once the API server is back.
    """

    def __init__(self, down_for: float, timeout: float, cause: str, resume: str) -> None:
        super().__init__(
            f"API server unreachable for {down_for:.0f}s, longer than the API timeout "
            f"({timeout:g}s); last error: {_shorten(cause)}. The rollout's state is safe in "
            f"the cluster (every decision is stored before it is acted on; traffic and "
            f"replicas stay as the last step set them). {resume}"
        )
        self.down_for = down_for
        self.timeout = timeout


class RecordError(CanaryError):
    """A stored rollout record is unreadable (edited by hand or by another tool).

    Not retried: the process stops acting (traffic and replicas stay as they are) and
    names the object and field to fix, rather than guessing what the record meant.
    """


class RouterError(CanaryError):
    """A traffic router could not read or set weights."""


class AnalysisError(CanaryError):
    """A metric provider or webhook failed (unreachable, malformed result)."""


class TestenvError(CanaryError):
    """The local control plane could not be built, started or stopped."""

    __test__ = False  # not a pytest class despite the name
