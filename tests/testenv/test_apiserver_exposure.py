"""Where the test bed's API server listens and whom it answers: its one address (loopback,
or the real node's address when there is a node, never every interface of the host), and
no anonymous requests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography import x509

from canaryctl.testenv import pki
from canaryctl.testenv.cluster import Bed, ClusterState, kube_apiserver


def _args(tmp_path: Path, **state: object) -> tuple[str, ...]:
    certs = pki.Pki(**{f.name: tmp_path / f.name for f in dataclasses.fields(pki.Pki)})
    bed = Bed(
        {"kube-apiserver": Path("/bin/kube-apiserver")},
        ClusterState("t", str(tmp_path), {"etcd": 1, "kube-apiserver": 6443}, **state),  # type: ignore[arg-type]
        certs,
    )
    return kube_apiserver(bed).command


def test_without_a_node_it_listens_on_loopback_only(tmp_path: Path) -> None:
    args = _args(tmp_path)
    assert "--bind-address=127.0.0.1" in args and "--advertise-address=127.0.0.1" in args
    assert ClusterState("t", "/x", {"kube-apiserver": 6443}).server == "https://127.0.0.1:6443"


def test_with_a_node_it_listens_on_the_node_address_only(tmp_path: Path) -> None:
    args = _args(tmp_path, dataplane=True, address="10.1.2.3")
    assert "--bind-address=10.1.2.3" in args and "--advertise-address=10.1.2.3" in args
    assert not [a for a in args if a.startswith("--bind-address=0.0.0.0")]
    state = ClusterState("t", "/x", {"kube-apiserver": 6443}, dataplane=True, address="10.1.2.3")
    assert state.server == "https://10.1.2.3:6443", "host clients use the same address"


def test_anonymous_requests_are_refused(tmp_path: Path) -> None:
    assert "--anonymous-auth=false" in _args(tmp_path)
    assert "--anonymous-auth=false" in _args(tmp_path, dataplane=True, address="10.1.2.3")


def test_the_serving_certificate_names_the_node_address(tmp_path: Path) -> None:
    certs = pki.generate(tmp_path, addresses=("10.1.2.3",))
    cert = x509.load_pem_x509_certificate(Path(certs.server_cert).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "10.96.0.1", "10.1.2.3"} <= ips
