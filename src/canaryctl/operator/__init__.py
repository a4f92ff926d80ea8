"""The in-cluster operator: Canary resources driven by the same Engine as the CLI.

`canaryctl operator` runs `controller.run`; see `controller` for how events become ticks,
`reconciler` for one pass over one Canary, `managed` for `<target>-primary`, `leader` for
high availability and `metrics` for the endpoints. Submodules are imported on use, so
the CLI starts fast.
"""
