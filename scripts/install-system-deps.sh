#!/usr/bin/env bash
# Debian packages the test suite and the demo need (idempotent; quick when present).
# Nothing here starts a service: the test environment starts its own servers (Prometheus,
# containerd) with private configs, state and sockets.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have prometheus || need+=(prometheus)
# The real node of `canaryctl testenv up --dataplane`: container runtime, CNI plugins
# (bridge, host-local, portmap, loopback in /usr/lib/cni), and the tools kubelet and
# kube-proxy call (iptables/nft, conntrack, ip, mount helpers).
have containerd || need+=(containerd)
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
have conntrack || need+=(conntrack)
have iptables || need+=(iptables)
have nft || need+=(nftables)
have ip || need+=(iproute2)
# The operator's image: a Debian root filesystem built with mmdebstrap (and its keyring).
have mmdebstrap || need+=(mmdebstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v go >/dev/null 2>&1 || { echo "Go >= 1.25 is required to build the local control plane" >&2; exit 1; }

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need[*]}"
  # Packages must not start system services here: tests start their own servers.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
