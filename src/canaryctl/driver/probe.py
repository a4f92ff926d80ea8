"""Send requests at a steady rate and record who answers: the engine of `canaryctl probe`.

The seed checks a rollout with `while sleep 0.1; do curl URL; done`. This does the same
with a bounded, open-loop schedule (see `core.traffic.Schedule`): request n leaves at
n / rate seconds whatever the earlier ones are doing, at most `max_in_flight` at once,
and the run ends by itself after `duration` (plus one timeout for the last answers).

By default every request opens its own connection, as curl does: kube-proxy balances
connections, not requests, so a reused connection would stick to one pod and hide the
split. `keep_alive=True` reuses connections (what a proxy in front balances per request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from canaryctl.core.traffic import Outcome, Schedule, SplitMeter, version_of
from canaryctl.errors import SpecError

__all__ = ["ProbeSettings", "check_target", "parse_header", "run_probe"]

Resolver = Callable[[str, int], list[str]]
_KEEPALIVE_POOL = 16


@dataclass(frozen=True)
class ProbeSettings:
    """What to probe and how hard."""

    url: str
    schedule: Schedule
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    keep_alive: bool = False
    allow_remote: bool = False
    max_in_flight: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise SpecError("--timeout", f"must be > 0 and <= 60 seconds, not {self.timeout}")
        if self.max_in_flight < 1:
            raise SpecError("max_in_flight", "must be >= 1")


def parse_header(text: str) -> tuple[str, str]:
    """`K=V` or `K: V` -> (K, V); a SpecError names the malformed header."""
    for sep in (":", "="):
        name, found, value = text.partition(sep)
        # Take the first separator that leaves a valid name ("X-Track=canary", "Host: a:1").
        if found and name.strip() and _TOKEN.issuperset(name.strip()):
            return name.strip(), value.strip()
    raise SpecError("--header", f"{text!r} is not NAME=VALUE (e.g. X-Track=canary)")


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SpecError("URL", f"cannot resolve host {host!r}: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_target(url: str, allow_remote: bool, resolve: Resolver = _resolve) -> httpx.URL:
    """Validate the URL; unless `allow_remote`, every address of its host must be a
    loopback one, because a probe sends real load and must not surprise anybody."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise SpecError("URL", f"{url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SpecError("URL", f"{url!r} must be an http:// or https:// URL with a host")
    if allow_remote:
        return parsed
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(parsed.host, port)
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if not addresses or remote:
        where = ", ".join(remote) or "nothing"
        raise SpecError(
            "URL",
            f"{parsed.host} resolves to {where}, not a loopback address; the probe sends "
            "real traffic, so aim it at a host you own with --allow-remote",
        )
    return parsed


async def _probe(
    settings: ProbeSettings,
    meter: SplitMeter,
    on_outcome: Callable[[Outcome], None] | None,
    on_tick: Callable[[float], None] | None,
    tick_every: float,
    clock: Callable[[], float],
    stop: threading.Event | None,
) -> None:
    schedule = settings.schedule
    headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
    if not settings.keep_alive:
        headers["Connection"] = "close"
    headers.update(dict(settings.headers))
    # httpcore scans its whole pool on every request: a small pool of reused
    # connections stays cheap. One slot per connection, so a request never queues
    # inside the pool and its measured latency is the server's (plus the network).
    in_flight, pooled = settings.max_in_flight, 0
    if settings.keep_alive:
        in_flight = pooled = min(settings.max_in_flight, _KEEPALIVE_POOL)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=pooled)
    slots = asyncio.Semaphore(in_flight)
    start = clock()

    async def one(client: httpx.AsyncClient, sent: float) -> None:
        try:
            began = clock()
            try:
                answer = await client.get(settings.url)
            except httpx.HTTPError as exc:  # no answer: refused, reset, timed out
                outcome = Outcome(sent, clock() - began, None, None, type(exc).__name__)
            else:
                version = version_of(answer.headers, answer.content)
                outcome = Outcome(sent, clock() - began, answer.status_code, version)
            meter.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        finally:
            slots.release()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_every)
            if on_tick is not None:
                on_tick(clock() - start)

    # trust_env=False: an HTTP(S)_PROXY in the environment must not reroute the probe.
    async with httpx.AsyncClient(
        headers=headers, timeout=settings.timeout, limits=limits, trust_env=False
    ) as client:
        ticks = asyncio.create_task(ticker())
        tasks: set[asyncio.Task[None]] = set()
        try:
            for n in range(schedule.total):
                wait = start + schedule.due(n) - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                if stop is not None and stop.is_set():
                    break
                await slots.acquire()  # all slots busy: the schedule lags, never floods
                sent = clock() - start
                if sent > schedule.duration + settings.timeout:
                    slots.release()
                    break  # saturated far past the end: stop rather than run over
                task = asyncio.create_task(one(client, sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            ticks.cancel()
            for task in tasks:
                task.cancel()
    if on_tick is not None:
        on_tick(clock() - start)


def run_probe(
    settings: ProbeSettings,
    meter: SplitMeter,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    tick_every: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> SplitMeter:
    """Run the whole schedule, counting every outcome into `meter` (which keeps what
    was counted if the run is interrupted); `on_tick(elapsed)` runs every `tick_every`
    seconds and once at the end; setting `stop` (from another thread) ends the run
    early, after the answers in flight. Returns `meter`.

    Checks the target first (see `check_target`): SpecError before anything is sent.
    """
    check_target(settings.url, settings.allow_remote)
    asyncio.run(_probe(settings, meter, on_outcome, on_tick, tick_every, clock, stop))
    return meter
