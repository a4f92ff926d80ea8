"""The test bed's audit option (benchmarks count each client's requests from the API
server's side): off by default, and when on, the policy logs the named users only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from canaryctl.testenv import pki
from canaryctl.testenv.cluster import Bed, ClusterState, kube_apiserver


def _bed(tmp_path: Path, users: list[str]) -> Bed:
    certs = pki.Pki(**{f.name: tmp_path / f.name for f in dataclasses.fields(pki.Pki)})
    state = ClusterState("t", str(tmp_path), {}, audit_users=users)
    return Bed({"kube-apiserver": Path("/bin/kube-apiserver")}, state, certs)


def test_api_server_writes_no_audit_log_unless_asked(tmp_path):
    args = kube_apiserver(_bed(tmp_path, [])).command
    assert not [a for a in args if a.startswith("--audit")]


def test_audit_log_holds_request_metadata_of_the_named_users_only(tmp_path):
    bed = _bed(tmp_path, ["flagger"])
    args = kube_apiserver(bed).command
    assert f"--audit-log-path={tmp_path / 'audit.log'}" in args
    policy = yaml.safe_load((tmp_path / "audit-policy.yaml").read_text())
    assert f"--audit-policy-file={tmp_path / 'audit-policy.yaml'}" in args
    assert policy["rules"] == [{"level": "Metadata", "users": ["flagger"]}, {"level": "None"}]
    # one line per request: neither the receipt nor the start of a watch's response
    assert set(policy["omitStages"]) == {"RequestReceived", "ResponseStarted"}
    assert bed.state.user_kubeconfig("flagger") == tmp_path / "kubeconfig-flagger"
