"""Run the canaryctl CLI with every Kubernetes API request it makes recorded.

`python recorder.py LOG canaryctl-arguments...`: appends one JSON line per request to LOG
(method, path, query, response status), then runs `canaryctl` exactly as the console
script does. The least-privilege tests read LOG to prove which verbs the CLI used and that
none was forbidden.
"""

from __future__ import annotations

import json
import sys


def install(log_path: str) -> None:
    """Wrap the HTTP clients' `send` so each request and its status go to `log_path`."""
    for module in ("httpx2", "httpx"):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        original = lib.Client.send

        def send(self, request, *args, _original=original, **kwargs):
            response = _original(self, request, *args, **kwargs)
            line = {
                "method": request.method,
                "path": request.url.path,
                "query": str(request.url.query, "ascii")
                if isinstance(request.url.query, bytes)
                else str(request.url.query),
                "status": response.status_code,
            }
            with open(log_path, "a") as log:
                log.write(json.dumps(line) + "\n")
            return response

        lib.Client.send = send


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = ["canaryctl", *sys.argv[2:]]
    from canaryctl.cli.app import main

    main()
