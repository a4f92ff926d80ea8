"""canaryctl.kube."""
