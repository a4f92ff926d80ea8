"""canaryctl.driver."""
