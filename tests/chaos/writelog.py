"""Every write to a set of object kinds in one namespace, recorded by watches on the real
API server: the evidence for "a held step writes nothing" and for write-rate bounds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lightkube import Client
from lightkube.core.generic_client import WatchDriver


@dataclass(frozen=True)
class Write:
    """One change the API server stored: an ADDED, MODIFIED or DELETED event."""

    at: float
    kind: str
    name: str
    event: str
    resource_version: str
    generation: int | None


@dataclass
class WriteLog:
    """Watches `kinds` in `namespace` for `seconds` from the current state; `writes` after."""

    kube: Client
    namespace: str
    kinds: list[Any]
    seconds: float
    writes: list[Write] = field(default_factory=list)
    generations: dict[tuple[str, str], tuple[int | None, int | None]] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> WriteLog:
        for res in self.kinds:
            # Start from the list's resourceVersion: only changes after it are reported.
            listing = self.kube.list(res, namespace=self.namespace)
            for obj in listing:
                key = (res.__name__, obj.metadata.name)
                self.generations[key] = (obj.metadata.generation, obj.metadata.generation)
            version = listing.resourceVersion
            thread = threading.Thread(target=self._watch, args=(res, version), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _watch(self, res: Any, version: str) -> None:
        # One watch request that the server ends after `seconds` (lightkube's own watch
        # reconnects forever; the test must not leave a thread behind).
        client = self.kube._client
        request = client.prepare_request(
            "list",
            res=res,
            namespace=self.namespace,
            watch=True,
            params={"timeoutSeconds": max(1, round(self.seconds)), "resourceVersion": version},
        )
        driver = WatchDriver(request, client._client.build_request)
        response = client.send(driver.get_request(timeout=client._watch_timeout), stream=True)
        try:
            response.raise_for_status()
            for line in response.iter_lines():
                event, obj = driver.process_one_line(line)
                meta = obj.metadata
                write = Write(
                    time.monotonic(),
                    res.__name__,
                    meta.name,
                    event,
                    meta.resourceVersion,
                    meta.generation,
                )
                with self._lock:
                    self.writes.append(write)
                    first, _ = self.generations.get((write.kind, write.name), (None, None))
                    self.generations[(write.kind, write.name)] = (first, meta.generation)
        finally:
            response.close()

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads:
            thread.join(self.seconds + 10)

    def counts(self) -> Counter[str]:
        """Writes per object, as `kind/name`."""
        return Counter(f"{w.kind.lower()}/{w.name}" for w in self.writes)

    def generation_bumps(self) -> dict[str, int]:
        """Per object, how far its metadata.generation moved during the watch."""
        bumps = {}
        for (kind, name), (first, last) in self.generations.items():
            if first is not None and last is not None and last != first:
                bumps[f"{kind.lower()}/{name}"] = last - first
        return bumps
