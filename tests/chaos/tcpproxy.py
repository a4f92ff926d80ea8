"""A TCP proxy in front of the API server that a test can pause: a network partition.

`pause()` holds every byte in both directions on open connections and leaves new ones
unanswered (accepted by the kernel's backlog, never served), as a dropped route does; the
client sees timeouts, not refusals. `resume()` lets traffic flow again. Threads only.
`partitionable()` puts one in front of a test cluster's API server, with a kubeconfig
through it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import yaml

from canaryctl.testenv import ClusterState


class PausableProxy:
    """Forwards 127.0.0.1:<port> to `target` until closed; pause() partitions it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self.server.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        """Partition: hold all traffic (open and new connections) until resume()."""
        self.open.clear()

    def resume(self) -> None:
        """Heal the partition."""
        self.open.set()

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self.closed.set()
        self.open.set()
        with contextlib.suppress(OSError):
            self.server.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            # A new connection during a partition waits, unanswered, like one whose
            # packets are dropped.
            self.open.wait()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()  # held, not lost, while partitioned
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def partitionable(cluster: ClusterState, folder: Path) -> tuple[PausableProxy, Path]:
    """A proxy in front of `cluster`'s API server, and a kubeconfig in `folder` that reaches
    the server through it: a client given that kubeconfig is the one a pause() cuts off.
    The caller closes the proxy."""
    server = urlparse(cluster.server)
    proxy = PausableProxy((server.hostname or "127.0.0.1", server.port or 443))
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    through = folder / "kubeconfig-proxy"
    through.write_text(yaml.safe_dump(config))
    return proxy, through
