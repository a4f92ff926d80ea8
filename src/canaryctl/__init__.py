"""canaryctl: progressive delivery (canary releases) for Kubernetes."""
