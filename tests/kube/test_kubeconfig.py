"""Reading kubeconfigs (`kube.client.load_kubeconfig`): libyaml's parser gives the same
configuration as lightkube's own `KubeConfig.from_file`, and a broken file is a clear
ClusterError from `make_client`. Pure: files only, no API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightkube import KubeConfig

from canaryctl.errors import ClusterError
from canaryctl.kube.client import load_kubeconfig, make_client

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "b",
    "clusters": [
        {"name": "a", "cluster": {"server": "https://10.0.0.1:6443",
                                  "certificate-authority-data": "TFMwdExTMUNSVWRK"}},
        {"name": "b", "cluster": {"server": "https://127.0.0.1:6443",
                                  "certificate-authority": "certs/ca.crt"}},
    ],
    "users": [
        {"name": "admin", "user": {"client-certificate": "certs/admin.crt",
                                   "client-key": "certs/admin.key"}},
        {"name": "robot", "user": {"token": "t0k3n"}},
    ],
    "contexts": [
        {"name": "a", "context": {"cluster": "a", "user": "robot", "namespace": "apps"}},
        {"name": "b", "context": {"cluster": "b", "user": "admin"}},
    ],
}  # fmt: skip


def test_same_configuration_as_lightkubes_own_reader(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    ours, theirs = load_kubeconfig(path), KubeConfig.from_file(path)
    for context in ("a", "b"):
        assert ours.get(context) == theirs.get(context)
    # Relative certificate paths resolve against the file's folder, as lightkube does.
    admin = ours.get("b")
    assert Path(admin.abs_file(admin.cluster.certificate_auth)) == tmp_path / "certs/ca.crt"
    assert ours.get().context_name == "b"


@pytest.mark.parametrize(
    ("text", "words"),
    [("- just\n- a list\n", "not a kubeconfig"), ("clusters: [\n", "kubeconfig"),
     ("kind: Config\ncontexts: []\n", "'clusters'"), ("", "not a kubeconfig")],
)  # fmt: skip
def test_a_broken_kubeconfig_is_a_cluster_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ClusterError, match="kubeconfig") as err:
        make_client(path)
    assert words in str(err.value)


def test_a_missing_kubeconfig_is_a_cluster_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="not found"):
        make_client(tmp_path / "nope")
