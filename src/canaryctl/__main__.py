"""`python -m canaryctl`: the same command line as `canaryctl`."""

from canaryctl.cli.app import main

main()
