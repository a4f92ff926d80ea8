"""Exit codes and error messages: the one place errors meet the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from canaryctl.errors import ApiUnreachable, CanaryError, SpecError

PROMOTED = 0
UNEXPECTED = 1
INVALID = 2
ROLLED_BACK = 3
ABORTED = 4
REQUESTS_FAILED = 5  # probe: more failed requests than --max-failures
CLUSTER_UNREACHABLE = 6  # the API server stayed unreachable past --api-timeout
INTERRUPTED = 130


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """Print canaryctl errors as one actionable line and exit with their code."""
    try:
        yield
    except SpecError as exc:
        print(f"error: invalid input: {exc.field}: {exc.reason}", file=sys.stderr)
        raise typer.Exit(INVALID) from None
    except ApiUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(CLUSTER_UNREACHABLE) from None
    except CanaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(UNEXPECTED) from None
    except Exception as exc:
        # An API server that refuses connections or times out, met by a one-shot command
        # (`plan`, `get NAME`, `abort`, ...; `rollout` retries up to --api-timeout itself):
        # one actionable line, not a traceback. Only once a client was made can it happen,
        # and the client's module is then loaded; importing it here would slow every start.
        client = sys.modules.get("canaryctl.kube.client")
        if client is None or not client.is_transient(exc):
            raise
        print(f"error: {client.unreachable(exc)}", file=sys.stderr)
        raise typer.Exit(UNEXPECTED) from None
