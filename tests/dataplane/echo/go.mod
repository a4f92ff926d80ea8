module canaryctl.local/tests/echo

go 1.25.0
