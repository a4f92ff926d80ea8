"""Pinned versions of the local control plane's components."""

from __future__ import annotations

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

#: Go modules the binaries are built from.
KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"

#: Kubernetes commands built from the k8s.io/kubernetes module.
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

#: Every binary the local control plane needs, by name.
ALL_BINARIES = (*KUBERNETES_COMMANDS, "etcd", "kwok")

#: The real node's Kubernetes commands (same module and wrapper go.mod as the control plane),
#: built into the same cache only when a data plane is asked for.
NODE_COMMANDS = ("kubelet", "kube-proxy")


def bundle_id() -> str:
    """Name of the cache folder for this exact set of versions."""
    return f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"


def staging_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """The k8s.io/* staging modules are published as v0.X.Y for Kubernetes v1.X.Y."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise ValueError(f"unsupported Kubernetes version {kubernetes_version}")
    return f"v0.{minor}.{patch}"


#: Traefik, the test bed's L7 proxy (NGINX canary annotations and Gateway API weights).
#: v3.7 is the first line whose kubernetesIngressNGINX provider reads the canary annotations.
TRAEFIK_VERSION = "v3.7.13"
TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
#: A nested module of Traefik's repository that its module zip leaves out (shimmed locally).
TRAEFIK_EXT_MODULE = "github.com/traefik/traefik/dynamic/ext"
#: Traefik replaces this module with a fork the proxy does not serve; the shim is upstream
#: at this version plus the two functions the fork adds.
GO_HTTP_AUTH_UPSTREAM = ("github.com/abbot/go-http-auth", "v0.4.0")
#: The ACME client; its version is the one Traefik's go.mod requires.
LEGO_MODULE = "github.com/go-acme/lego/v5"
#: lego DNS providers whose cloud SDKs the Go module proxy refuses (403); the shim drops them.
LEGO_DNS_PROVIDERS_WITHOUT_SDK = (
    "alidns",
    "aliesa",
    "azion",
    "dnsimple",
    "edgedns",
    "edgeone",
    "huaweicloud",
    "oraclecloud",
    "regfish",
    "sakuracloud",
    "tencentcloud",
    "ucloud",
    "yandexcloud",
)

#: istioctl, for `istioctl analyze` of the Istio router's objects (there is no Envoy here).
#: Istio tags its releases without the "v" Go needs ("1.32.0"), so the Go module proxy
#: serves istio.io/istio only as pseudo-versions, and only a few of them. This is the newest
#: served (2026-08-27, the 1.31 line: it requires istio.io/api v1.31.0-rc); our CRDs come
#: from istio.io/api v1.32.0, whose networking v1 schema the analyzers check the same way.
ISTIO_MODULE = "istio.io/istio"
ISTIO_VERSION = "v0.0.0-20260827124520-eed52ebb66ad"
ISTIOCTL_PACKAGE = "istio.io/istio/istioctl/cmd/istioctl"

#: Helm (installs the operator's chart in the packaging tests), built from its Go module.
#: The newest v3 release the Go module proxy serves; its go.mod has no replace directives.
HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3"
