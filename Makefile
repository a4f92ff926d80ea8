# canaryctl: everything a fresh machine needs, from these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps binaries traefik istioctl istio-analyze helm chart-package operator-image test test-host test-chart-cluster chaos demo demo-quick lint format clean-testenv bench-operator bench-peers

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

# Kubernetes, etcd and KWOK built from pinned Go modules into ~/.cache/canaryctl (once).
# As root, also the real node's kubelet and kube-proxy (testenv up --dataplane).
# kubectl comes from the same build; it is linked into .venv/bin, and onto PATH if none is there.
binaries: install
	$(BIN)/canaryctl testenv build $$([ "$$(id -u)" -eq 0 ] && echo --dataplane) > $(VENV)/binaries.txt
	@cat $(VENV)/binaries.txt
	@k=$$(awk '/^kubectl:/{print $$2}' $(VENV)/binaries.txt); ln -sf "$$k" $(BIN)/kubectl; \
	if ! command -v kubectl >/dev/null 2>&1 && [ -w /usr/local/bin ]; then \
		ln -sf "$$k" /usr/local/bin/kubectl && echo "linked /usr/local/bin/kubectl -> $$k"; fi

# Traefik (the L7 proxy of the data-plane tests) from its Go module, with local shims (once).
traefik: install
	$(BIN)/canaryctl testenv build --traefik

# helm from its pinned Go module (installs the operator's chart in the tests; once).
helm: install
	$(BIN)/canaryctl testenv build --helm

# The chart as a versioned archive plus a chart-repository index in dist/charts, to serve
# over HTTP (`helm repo add`) or push to an OCI registry (`helm push ... oci://REGISTRY/charts`).
HELM = $(BIN)/python -c 'from canaryctl.testenv import helm_build as h; print(h.ensure(lambda *_: None))'
chart-package: helm
	rm -rf dist/charts && mkdir -p dist/charts
	helm=$$($(HELM)) && $$helm package charts/canaryctl -d dist/charts && $$helm repo index dist/charts

# The operator's OCI image tar: Debian root filesystem (mmdebstrap) + canaryctl's wheel and
# dependencies, cached by input hash (Containerfile: the same image for a registry).
# As root only: mmdebstrap's root mode, and only the real node (root) runs the image.
operator-image: install
	@if [ "$$(id -u)" -eq 0 ]; then nice -n 10 $(BIN)/canaryctl testenv build --operator-image; \
	else echo "operator-image: needs root (mmdebstrap); the real-node chart test will skip"; fi

# istioctl from the istio.io/istio Go module, no replace directives (once; long: see README).
istioctl: install
	$(BIN)/canaryctl testenv build --istioctl

# `istioctl analyze` of the Istio router's objects at every step of a rollout. Not a
# prerequisite of `make test` (the first build is long); once built, `make test` runs it too.
istio-analyze: binaries istioctl
	$(BIN)/pytest tests/routers/test_istio_analyze.py

test: system-deps binaries traefik helm operator-image
	$(BIN)/pytest -m "not chaos and not host_long"

# Further host-restore variants on a real node of their own (root): kube-proxy's nftables
# mode through `testenv down`. `make test` runs the iptables mode through `down` and the
# nftables mode through the clean-up of a node whose processes died.
test-host: system-deps binaries traefik
	$(BIN)/pytest -m host_long tests/dataplane/test_host_restore.py

# Long reliability runs (10,000 fuzz cases per input, kills at random instants, Prometheus
# faults, writes at rest); the short version of each runs in `make test`.
chaos: system-deps binaries traefik
	$(BIN)/pytest -m chaos -s

# The chart's real-node flow (install, upgrade mid-rollout, rollback, uninstall) with the
# cluster-wide RBAC scope; `make test` runs it with the namespaced scope.
test-chart-cluster: system-deps binaries traefik helm operator-image
	CANARYCTL_CHART_SCOPE=cluster $(BIN)/pytest tests/chart/test_chart_realnode.py

# Real pods and traffic when the host can run a node (root); else the quick demo.
demo: system-deps binaries traefik
	$(BIN)/canaryctl demo

# Operator cost at 100/300/1000 Canary resources (minutes; not part of `make test`).
bench-operator: binaries
	nice -n 10 $(BIN)/python -P benchmarks/operator.py

# canaryctl's operator against Flagger (built from its Go module, cached) on fresh KWOK
# clusters, N = 100 and 300 (tens of minutes; not part of `make test`). The build runs at
# nice 19; the measured processes are not niced (the load average is recorded instead).
# More sizes or tools: PEERS_ARGS='--sizes 1000 --tools canaryctl,flagger'.
PEERS_ARGS ?= --sizes 100,300
bench-peers: binaries
	bash benchmarks/peers/build.sh
	$(BIN)/python benchmarks/peers/compare.py $(PEERS_ARGS)

# KWOK only: simulated pods, no traffic, no root needed.
demo-quick: system-deps binaries
	$(BIN)/canaryctl demo --quick

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean-testenv: install
	$(BIN)/canaryctl testenv down
