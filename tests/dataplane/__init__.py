"""Helpers of the data-plane tests (a package, so that `dataplane` never resolves to
benchmarks/dataplane.py once a benchmark module has put its folder on the path)."""
