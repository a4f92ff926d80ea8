"""One mapping of refused writes (`kube.client.write_error`): a race is a ConflictError (decided
again at once), a refusal on the merits is WriteDenied (told, retried with backoff).

Pure: the API server's Status bodies below are the shapes it answers with (a failed JSON
patch `test` op, a ValidatingAdmissionPolicy, a webhook); the operator's integration test
gets the same answers from a real API server with a real policy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lightkube.core.exceptions import ApiError

from canaryctl.errors import ClusterError, ConflictError, WriteDenied
from canaryctl.kube.client import denial_of, write_error


def api_error(code: int, message: str, reason: str = "", causes: list[str] = ()) -> ApiError:
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "message": message, "reason": reason,
    }  # fmt: skip
    if causes:
        body["details"] = {"causes": [{"message": c} for c in causes]}
    request = httpx.Request("PATCH", "https://api/apis/apps/v1/namespaces/ns/deployments/app")
    return ApiError(request=request, response=httpx.Response(code, json=body, request=request))


VAP = (
    "deployments.apps \"app\" is forbidden: ValidatingAdmissionPolicy 'keep-up' with binding "
    "'keep-up' denied request: app must keep a replica"
)


@pytest.mark.parametrize(
    "error",
    [
        api_error(409, "Operation cannot be fulfilled: the object has been modified", "Conflict"),
        # what kube-apiserver answers (NewGenericServerResponse drops the patch's own words)
        api_error(422, "the server rejected our request due to an error in our request",
                  "Invalid"),
    ],
    ids=["409", "failed-test-op"],
)  # fmt: skip
def test_a_race_is_a_conflict(error: ApiError) -> None:
    assert isinstance(write_error(error, "deployment/app in ns"), ConflictError)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (api_error(422, VAP, "Invalid", [VAP]), "ValidatingAdmissionPolicy 'keep-up'"),
        (api_error(403, 'admission webhook "check" denied the request: no', "Forbidden"),
         'admission webhook "check" denied the request: no'),
    ],
    ids=["policy-422", "webhook-403"],
)  # fmt: skip
def test_an_admission_refusal_is_write_denied_naming_object_and_policy(
    error: ApiError, says: str
) -> None:
    denied = write_error(error, "deployment/app in ns")
    assert isinstance(denied, WriteDenied) and not isinstance(denied, ConflictError)
    assert denied.object == "deployment/app in ns" and says in denied.reason
    assert "deployment/app in ns" in str(denied) and says in str(denied)


def test_a_denial_is_found_inside_a_wrapping_cluster_error() -> None:
    error = api_error(422, VAP, "Invalid", [VAP])
    try:
        try:
            raise error
        except ApiError as exc:
            raise ClusterError("applying deployment/app-primary: refused") from exc
    except ClusterError as wrapped:
        denied = denial_of(wrapped)
    assert denied is not None and "keep-up" in denied.reason
    assert "app-primary" in denied.object
    assert denial_of(ClusterError("no API error inside")) is None
    assert denial_of(api_error(500, "etcd down")) is None
