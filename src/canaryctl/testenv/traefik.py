"""Traefik as the test bed's L7 proxy: a host process serving the cluster's Ingresses of
class ``nginx`` (through its ``kubernetesIngressNGINX`` provider, which implements the
ingress-nginx canary annotations) and its Gateway API HTTPRoutes (``kubernetesGateway``).

Traefik runs out of cluster, so it talks to the API server with the endpoint, the cluster
CA and the token of its own ServiceAccount ``canaryctl-system/traefik``, bound to a
ClusterRole that grants only what the two providers read and the status they write.
Requests enter on one loopback entry point (``web``); the Gateway ``canaryctl-system/
traefik`` listens on the same port, so Ingresses and HTTPRoutes share it. The API and
ping answer on a second loopback port, used for health and to wait for routes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

from canaryctl.errors import TestenvError
from canaryctl.kube.client import FIELD_MANAGER, make_client
from canaryctl.testenv import crds, traefik_build
from canaryctl.testenv.binaries import Progress
from canaryctl.testenv.components import Component, Runner, alive, tail

if TYPE_CHECKING:
    from canaryctl.testenv.cluster import Bed, ClusterState

NAMESPACE = "canaryctl-system"
SERVICE_ACCOUNT = "traefik"
#: The IngressClass canaryctl's NGINX examples use; Traefik claims it by controller value.
INGRESS_CLASS = "nginx"
INGRESS_CONTROLLER = "k8s.io/ingress-nginx"
GATEWAY_CLASS = "traefik"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
GATEWAY = "traefik"
ENTRYPOINT = "web"
#: How long Traefik's ServiceAccount token lives (the test bed is short-lived).
TOKEN_SECONDS = 24 * 3600

_READ = ["get", "list", "watch"]

# Registered so codecs.from_dict knows the Gateway API kinds this module writes.
GatewayClassResource = create_global_resource(
    "gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses"
)
GatewayResource = create_namespaced_resource(
    "gateway.networking.k8s.io", "v1", "Gateway", "gateways"
)


def rbac_docs() -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, ClusterRole and binding: what the two providers need.

    Read access to Services, EndpointSlices, Secrets and ConfigMaps (the providers'
    informers list them; Secrets hold TLS certificates), Namespaces, Ingresses,
    IngressClasses and the Gateway API kinds; write access only to status subresources.
    """
    gateway_kinds = [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tlsroutes",
        "referencegrants",
        "backendtlspolicies",
    ]
    role = f"canaryctl-{SERVICE_ACCOUNT}"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "secrets", "configmaps", "namespaces"],
                    "verbs": _READ,
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": _READ,
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses", "ingressclasses"],
                    "verbs": _READ,
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses/status"],
                    "verbs": ["update"],
                },
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": gateway_kinds,
                    "verbs": _READ,
                },
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": [f"{k}/status" for k in gateway_kinds],
                    "verbs": ["update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
            ],
        },
    ]


def class_docs(web_port: int) -> list[dict[str, Any]]:
    """The IngressClass ``nginx``, the GatewayClass and a Gateway on Traefik's entry point.

    Traefik maps a Gateway listener to the entry point with the same port, so the listener
    uses the (free, per test bed) web port. Routes of every namespace may attach.
    """
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": web_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def user_route(name: str, host: str, port: int = 80) -> dict[str, Any]:
    """A user's HTTPRoute `name` on the Gateway above: requests for `host`, every path, to
    Service `name` at `port` (what a test or benchmark gives a router to manage)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "namespace": NAMESPACE}],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": name, "port": port}],
                }
            ],
        },
    }


def static_config(
    *, server: str, ca_cert: Path, token_file: Path, web_port: int, api_port: int
) -> dict[str, Any]:
    """Traefik's static configuration (written as YAML) for one test bed."""
    kube = {
        "endpoint": server,
        "token": str(token_file),
        "certAuthFilePath": str(ca_cert),
        # Apply every change at once: tests measure how fast weights take effect.
        "throttleDuration": "0s",
    }
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            ENTRYPOINT: {"address": f"127.0.0.1:{web_port}"},
            "traefik": {"address": f"127.0.0.1:{api_port}"},
        },
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO"},
        "providers": {
            "kubernetesIngressNGINX": {
                **kube,
                "ingressClass": INGRESS_CLASS,
                "controllerClass": INGRESS_CONTROLLER,
                "httpEntryPoint": ENTRYPOINT,
            },
            "kubernetesGateway": dict(kube),
        },
    }


@dataclass
class TraefikState:
    """Where a Traefik listens and its pid (``traefik.json`` when run beside a cluster)."""

    folder: str
    web_port: int
    api_port: int
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0

    @property
    def url(self) -> str:
        """Base URL of the entry point serving Ingresses and HTTPRoutes."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def api(self) -> str:
        """Base URL of Traefik's API and ping."""
        return f"http://127.0.0.1:{self.api_port}"


def _apply(client: Client, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        obj = codecs.from_dict(doc)
        namespace = doc["metadata"].get("namespace")
        try:
            client.apply(obj, namespace=namespace, field_manager=FIELD_MANAGER, force=True)
        except ApiError as exc:
            raise TestenvError(
                f"testenv traefik: applying {doc['kind']}/{doc['metadata']['name']}: "
                f"{exc.status.message}"
            ) from exc


def issue_token(client: Client, seconds: int = TOKEN_SECONDS) -> str:
    """A bound token of Traefik's ServiceAccount (TokenRequest API)."""
    request = ServiceAccount.Token(
        metadata=ObjectMeta(name=SERVICE_ACCOUNT, namespace=NAMESPACE),
        spec=TokenRequestSpec(audiences=[], expirationSeconds=seconds),
    )
    res = client.create(request, SERVICE_ACCOUNT, namespace=NAMESPACE)
    token = res.status.token if res.status else None
    if not token:
        raise TestenvError(f"testenv traefik: no token issued for {NAMESPACE}/{SERVICE_ACCOUNT}")
    return str(token)


def pinged(api: str) -> bool:
    """True when Traefik answers its ping."""
    try:
        return httpx.get(f"{api}/ping", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def gateway_programmed(client: Client) -> bool:
    """True once Traefik has accepted the Gateway (its Programmed condition)."""
    gateway = client.get(GatewayResource, GATEWAY, namespace=NAMESPACE)
    conditions = (gateway.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Programmed" and c["status"] == "True" for c in conditions)


def component(
    *,
    binary: Path,
    folder: Path,
    server: str,
    ca_cert: Path,
    kubeconfig: Path,
    web_port: int,
    api_port: int,
) -> Component:
    """Traefik as a test-bed component.

    Before it starts (the API server being healthy), the Gateway API CRDs its provider
    watches, its ServiceAccount and RBAC, a token and the classes and Gateway are put in
    the cluster; it is healthy once it answers ping and has programmed the Gateway.
    """
    token_file = folder / "token"
    config_file = folder / "traefik.yaml"
    config = static_config(
        server=server, ca_cert=ca_cert, token_file=token_file, web_port=web_port, api_port=api_port
    )
    clients: list[Client] = []

    def kube() -> Client:
        # Made on first use: the kubeconfig is written after the components are built.
        if not clients:
            clients.append(make_client(kubeconfig))
        return clients[0]

    def before_start() -> None:
        client = kube()
        crds.install(client, (crds.GATEWAY_API,), progress=lambda _: None)
        _apply(client, rbac_docs())
        folder.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(issue_token(client))
        _apply(client, class_docs(web_port))

    def healthy() -> bool:
        return pinged(f"http://127.0.0.1:{api_port}") and gateway_programmed(kube())

    return Component(
        name="traefik",
        command=(str(binary), f"--configFile={config_file}"),
        links=("kube-apiserver",),
        health=healthy,
        health_what="Traefik's ping and its Gateway Programmed",
        files={config_file: yaml.safe_dump(config, sort_keys=False)},
        before_start=before_start,
    )


def traefik(bed: Bed) -> Component:
    """The builder used by the local cluster's data plane (``bins["traefik"]``)."""
    return component(
        binary=bed.bins["traefik"],
        folder=bed.folder / "traefik",
        server=bed.state.server,
        ca_cert=bed.certs.ca_cert,
        kubeconfig=bed.state.kubeconfig,
        web_port=bed.port("traefik-web"),
        api_port=bed.port("traefik-api"),
    )


def state_of(cluster: ClusterState) -> TraefikState | None:
    """Traefik's ports in a cluster started with the data plane, or None."""
    if "traefik-web" not in cluster.ports:
        return None
    return TraefikState(
        str(Path(cluster.folder) / "traefik"),
        cluster.ports["traefik-web"],
        cluster.ports["traefik-api"],
        {"traefik": cluster.pids.get("traefik", 0)},
        cluster.started_at,
    )


class LocalTraefik:
    """Traefik beside a running control plane (without the data plane), in its folder.

    Tests of the proxy alone use it; ``LocalCluster(dataplane=True)`` runs the same
    component with the rest of the node instead.
    """

    def __init__(self, cluster: ClusterState, progress: Progress = print) -> None:
        self.cluster = cluster
        self.progress = progress
        self.folder = Path(cluster.folder) / "traefik"
        self._runner = Runner(self.folder, progress)

    def state(self) -> TraefikState | None:
        """The running Traefik's state, or None."""
        path = self.folder / "traefik.json"
        if not path.exists():
            return None
        return TraefikState(**json.loads(path.read_text()))

    def up(self, timeout: float = 60.0) -> TraefikState:
        """Start Traefik (or return the running one) and wait until it serves the Gateway."""
        state = self.state()
        running = state is not None and alive(state.pids.get("traefik", 0), state.folder)
        if state is not None and running and pinged(state.api):
            return state
        self.down()
        binary = traefik_build.ensure(self.progress)
        started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        from canaryctl.testenv.cluster import free_port

        state = TraefikState(str(self.folder), free_port(), free_port(), started_at=time.time())
        comp = component(
            binary=binary,
            folder=self.folder,
            server=self.cluster.server,
            ca_cert=Path(self.cluster.folder) / "pki" / "ca.crt",
            kubeconfig=self.cluster.kubeconfig,
            web_port=state.web_port,
            api_port=state.api_port,
        )
        try:
            # The API server is not one of this runner's components: it already runs.
            alone = dataclasses.replace(comp, links=())
            self._runner.start([alone], state.pids, lambda: self._save(state), started + timeout)
        except BaseException:
            self.down()
            raise
        self.progress(
            f"traefik: up in {time.monotonic() - started:.1f}s on {state.url} (api {state.api})"
        )
        return state

    def down(self) -> None:
        """Stop Traefik (by its recorded pid) and remove its folder; cluster objects stay."""
        state = self.state()
        if state is not None:
            Runner.stop(state.pids, state.folder)
        if self.folder.exists():
            for child in self.folder.iterdir():
                child.unlink()
            self.folder.rmdir()

    def log_tail(self, lines: int = 20) -> str:
        """The end of Traefik's log, for error messages."""
        return tail(self.folder / "traefik.log", lines)

    def _save(self, state: TraefikState) -> None:
        tmp = self.folder / "traefik.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.folder / "traefik.json")
