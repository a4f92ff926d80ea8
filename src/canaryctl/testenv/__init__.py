"""A real local Kubernetes control plane for tests and the demo (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK), built from pinned Go modules."""

from canaryctl.testenv.cluster import ClusterState, LocalCluster

__all__ = ["ClusterState", "LocalCluster"]
