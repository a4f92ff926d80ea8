"""`canaryctl probe URL`: watch which versions answer, at a steady rate, for a while.

The seed's `while sleep 0.1; do curl URL; done`, measured: a live split by version (over
the last seconds and over the run), error rate and p50/p99 latency by version, and a
summary at the end. `-o json` prints one JSON object per second and a summary line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from canaryctl.cli import exits

if TYPE_CHECKING:
    from rich.table import Table

    from canaryctl.core.traffic import SplitMeter

OUTPUTS = ("live", "plain", "json")


def probe(
    url: Annotated[
        str, typer.Argument(help="http(s) URL to request (loopback unless --allow-remote).")
    ],
    rate: Annotated[float, typer.Option("--rate", "-r", help="Requests per second.")] = 10.0,
    duration: Annotated[
        str, typer.Option("--duration", "-d", help="How long to run, e.g. 30s or 2m.")
    ] = "10s",
    count: Annotated[
        int | None, typer.Option("--count", "-c", help="Stop after this many requests.")
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", help="Extra header NAME=VALUE (repeatable), e.g. X-Track=canary."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 5.0,
    keep_alive: Annotated[
        bool,
        typer.Option(help="Reuse connections (the default opens one per request, like curl)."),
    ] = False,
    window: Annotated[
        float, typer.Option(help="Seconds of recent requests the live split covers.")
    ] = 5.0,
    max_failures: Annotated[
        int | None,
        typer.Option(help="Exit 5 when more requests than this fail (5xx or no answer)."),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a host that is not a loopback address (one you own).")
    ] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="live, plain or json")] = "live",
) -> None:
    """Send requests at a steady rate and show the split, errors and latency by version.

    Exit codes: 0 done, 2 invalid input (nothing sent), 1 no request got an answer,
    5 more failed requests than --max-failures, 130 interrupted (the summary is printed).
    """
    from canaryctl.core.durations import parse_duration
    from canaryctl.core.traffic import Schedule, SplitMeter
    from canaryctl.driver.probe import ProbeSettings, parse_header, run_probe
    from canaryctl.errors import CanaryError, SpecError

    with exits.errors_to_exit_codes():
        if output not in OUTPUTS:
            raise SpecError("--output", f"{output!r} is not one of {', '.join(OUTPUTS)}")
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise SpecError("--duration", str(exc)) from None
        settings = ProbeSettings(
            url=url,
            schedule=Schedule(rate, seconds, count),
            headers=tuple(parse_header(h) for h in header or ()),
            timeout=timeout,
            keep_alive=keep_alive,
            allow_remote=allow_remote,
        )
        if max_failures is not None and max_failures < 0:
            raise SpecError("--max-failures", f"must be >= 0, not {max_failures}")
        meter = SplitMeter(window)
        view = _make_view(output, url, settings.schedule.total, meter)
        interrupted = False
        try:
            run_probe(settings, meter, on_tick=view.tick, tick_every=view.every)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            view.close()
        view.summary(interrupted)
        if interrupted:
            raise typer.Exit(exits.INTERRUPTED)
        if meter.requests and meter.failed == meter.requests and not _any_answer(meter):
            raise CanaryError(f"no answer from {url}: {_failure_reasons(meter)}")
        if max_failures is not None and meter.failed > max_failures:
            print(
                f"error: {meter.failed} of {meter.requests} requests failed "
                f"(--max-failures {max_failures})",
                file=sys.stderr,
            )
            raise typer.Exit(exits.REQUESTS_FAILED)


def _any_answer(meter: SplitMeter) -> bool:
    return any(code.isdigit() for s in meter.versions.values() for code in s.codes)


def _failure_reasons(meter: SplitMeter) -> str:
    codes = {c: n for s in meter.versions.values() for c, n in s.codes.items()}
    return ", ".join(f"{n} x {c}" for c, n in sorted(codes.items()))


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}ms"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _table(report: dict[str, Any], title: str, with_window: bool) -> Table:
    """The per-version table of a report (see `SplitMeter.report`)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", header_style="bold")
    columns = ["version", "split", "requests", "share"]
    if with_window:
        columns.insert(1, f"last {report['window']:g}s")
    for col in [*columns, "failed", "error rate", "p50", "p99", "codes"]:
        table.add_column(col, justify="left" if col in ("version", "split", "codes") else "right")
    for name, v in report["versions"].items():
        share = v["windowShare"] if with_window else v["share"]
        filled = round(24 * share)
        bar = Text("█" * filled, style="magenta") + Text("░" * (24 - filled), style="dim")
        codes = " ".join(f"{c}:{n}" for c, n in v["codes"].items())
        row = [name, bar, str(v["requests"]), _pct(v["share"])]
        if with_window:
            row.insert(1, _pct(v["windowShare"]))
        style = "red" if v["failed"] else ""
        table.add_row(
            *row, Text(str(v["failed"]), style=style), _pct(v["errorRate"]),
            _ms(v["p50"]), _ms(v["p99"]), codes,
        )  # fmt: skip
    return table


class _View:
    """Progress and summary for one output mode."""

    every = 0.25

    def __init__(self, url: str, total: int, meter: SplitMeter, out: IO[str]) -> None:
        self.url, self.total, self.meter, self.out = url, total, meter, out
        self.elapsed = 0.0

    def tick(self, elapsed: float) -> None:
        self.elapsed = elapsed

    def close(self) -> None:
        """Stop refreshing."""

    def summary(self, interrupted: bool) -> None:
        from rich.console import Console

        report = self.meter.report(self.elapsed)
        state = "interrupted" if interrupted else "done"
        title = (
            f"probe {self.url}: {state}, {report['requests']} requests in "
            f"{self.elapsed:.1f}s, {report['failed']} failed"
        )
        Console(file=sys.stdout).print(_table(report, title, with_window=False))


class _LiveView(_View):
    """A rich panel refreshed four times a second (stderr)."""

    def __init__(self, url: str, total: int, meter: SplitMeter) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(url, total, meter, sys.stderr)
        self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
        self.live.start()

    def tick(self, elapsed: float) -> None:
        super().tick(elapsed)
        report = self.meter.report(elapsed)
        title = (
            f"probe {self.url}  {elapsed:.1f}s  {report['requests']}/{self.total} requests  "
            f"{report['failed']} failed"
        )
        self.live.update(_table(report, title, with_window=True))

    def close(self) -> None:
        self.live.stop()


class _PlainView(_View):
    """One line a second (stderr), for logs and terminals without a cursor."""

    every = 1.0

    def __init__(self, url: str, total: int, meter: SplitMeter) -> None:
        super().__init__(url, total, meter, sys.stderr)

    def tick(self, elapsed: float) -> None:
        super().tick(elapsed)
        report = self.meter.report(elapsed)
        parts = [
            f"{name} {_pct(v['windowShare'])} (run {_pct(v['share'])}, "
            f"{v['failed']} failed, p50 {_ms(v['p50'])} p99 {_ms(v['p99'])})"
            for name, v in report["versions"].items()
        ]
        print(
            f"[{elapsed:6.1f}s] {report['requests']}/{self.total} requests: " + "; ".join(parts),
            file=self.out,
            flush=True,
        )


class _JsonView(_View):
    """One JSON object a second on stdout (kind "progress"), then kind "summary"."""

    every = 1.0

    def __init__(self, url: str, total: int, meter: SplitMeter) -> None:
        super().__init__(url, total, meter, sys.stdout)
        self.started = time.time()

    def _emit(self, kind: str, **extra: Any) -> None:
        event = {"kind": kind, "url": self.url, **self.meter.report(self.elapsed), **extra}
        print(json.dumps(event, sort_keys=True), file=self.out, flush=True)

    def tick(self, elapsed: float) -> None:
        super().tick(elapsed)
        self._emit("progress")

    def summary(self, interrupted: bool) -> None:
        self._emit("summary", planned=self.total, interrupted=interrupted)


def _make_view(output: str, url: str, total: int, meter: SplitMeter) -> _View:
    """The view for --output, falling back to plain lines without a terminal."""
    if output == "json":
        return _JsonView(url, total, meter)
    if output == "plain" or not sys.stderr.isatty():
        return _PlainView(url, total, meter)
    return _LiveView(url, total, meter)
