#!/usr/bin/env bash
# Build the pinned peers from their Go modules into the binary cache (once; cached).
#   Flagger:       github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION
#                  -> ~/.cache/canaryctl/flagger-$FLAGGER_VERSION/{bin/flagger,crds/canary.yaml}
#   Argo Rollouts: github.com/argoproj/argo-rollouts/cmd/rollouts-controller@$ARGO_VERSION,
#                  only with --argo. Its go.mod asks for a newer Go than ours (GOTOOLCHAIN=auto
#                  fetches it) and has replace directives, which `go install pkg@version`
#                  refuses: it is built inside its module source, where they apply.
# Nothing of their code is kept in this repository: the sources stay in the Go module cache.
# Build times go to <cache>/build-time.txt. Usage: benchmarks/peers/build.sh [--argo]
set -euo pipefail

FLAGGER_VERSION=${FLAGGER_VERSION:-v1.44.0}
ARGO_VERSION=${ARGO_VERSION:-v1.10.2}
CACHE=${CANARYCTL_CACHE:-$HOME/.cache/canaryctl}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

build() {  # build <dir> <module/cmd@version> <binary>
  local dir=$1 pkg=$2 binary=$3 start end
  if [[ -x $dir/bin/$binary ]]; then
    echo "$binary: $dir/bin/$binary (cached)"
    return 0
  fi
  mkdir -p "$dir/bin"
  start=$(date +%s)
  GOBIN=$dir/bin nice -n 19 go install "$pkg"
  end=$(date +%s)
  echo "$pkg built in $((end - start)) s on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee "$dir/build-time.txt"
  echo "$binary: $dir/bin/$binary"
}

flagger_dir=$CACHE/flagger-$FLAGGER_VERSION
build "$flagger_dir" "github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION" flagger
if [[ ! -s $flagger_dir/crds/canary.yaml ]]; then
  src=$(go mod download -json "github.com/fluxcd/flagger@$FLAGGER_VERSION" \
    | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$flagger_dir/crds"
  cp "$src/artifacts/flagger/crd.yaml" "$flagger_dir/crds/canary.yaml"
fi
echo "flagger-crds: $flagger_dir/crds/canary.yaml"

if [[ ${1:-} == --argo ]]; then
  export GOTOOLCHAIN=auto
  argo_dir=$CACHE/argo-rollouts-$ARGO_VERSION
  if [[ ! -x $argo_dir/bin/rollouts-controller ]]; then
    src=$(go mod download -json "github.com/argoproj/argo-rollouts@$ARGO_VERSION" \
      | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    work=$(mktemp -d)
    trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
    cp -r "$src/." "$work" && chmod -R u+w "$work"
    mkdir -p "$argo_dir/bin"
    start=$(date +%s)
    if ! (cd "$work" && nice -n 19 go build -o "$argo_dir/bin/rollouts-controller" \
      ./cmd/rollouts-controller); then
      echo "argo-rollouts@$ARGO_VERSION: build failed (see above)" >&2
      exit 2
    fi
    echo "argo-rollouts@$ARGO_VERSION built in $(($(date +%s) - start)) s, load" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" | tee "$argo_dir/build-time.txt"
  fi
  echo "rollouts-controller: $argo_dir/bin/rollouts-controller"
fi
