# canaryctl: everything a fresh machine needs, from these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps binaries traefik test chaos demo demo-quick lint format clean-testenv bench-operator

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

test: system-deps binaries traefik
	$(BIN)/pytest -m "not chaos"

# Long reliability runs (10,000 fuzz cases per input, kills at random instants); the short
# version of each runs in `make test`.
chaos: system-deps binaries
	$(BIN)/pytest -m chaos -s

# Real pods and traffic when the host can run a node (root); else the quick demo.
demo: system-deps binaries traefik
	$(BIN)/canaryctl demo

# Operator cost at 100/300/1000 Canary resources (minutes; not part of `make test`).
bench-operator: binaries
	nice -n 10 $(BIN)/python -P benchmarks/operator.py

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
