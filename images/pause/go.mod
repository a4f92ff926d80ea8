module canaryctl.local/images/pause

go 1.25.0
