"""canaryctl.cli."""
