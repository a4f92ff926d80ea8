"""Prometheus metric provider: one instant query, one number, strictly validated.

A query either yields exactly one finite number, or `None` ("no data": empty result,
NaN, +/-Inf), or raises `AnalysisError`. There is no path where a broken answer
turns into a passing value. Credentials are read per query (so rotated tokens are
picked up) and never appear in logs, exception messages or reprs. An attempt's timeout
bounds the whole answer, not each read (`_deadline`).
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from canaryctl.errors import AnalysisError, SpecError
from canaryctl.providers import _deadline

__all__ = ["Auth", "PrometheusClient", "SecretGetter", "SecretRef", "redact_url"]

log = logging.getLogger(__name__)

SecretGetter = Callable[[str, str], bytes]
"""Reads one key of a Kubernetes Secret: `(secret_name, key) -> decoded bytes`.

The caller binds the namespace; the kube layer provides the implementation.
"""

# Statuses worth another attempt: proxies in front of Prometheus (502, 504) and
# Prometheus itself when a query timed out or the server is overloaded (503).
_RETRY_STATUSES = frozenset({502, 503, 504})
_BODY_SNIPPET = 200
_AUTH_FIELDS = frozenset(
    {"bearerTokenFile", "basicAuthFile", "username", "passwordFile", "secretRef", "scheme"}
)


@dataclass(frozen=True)
class SecretRef:
    """A key of a Kubernetes Secret in the canary's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Auth:
    """Where Prometheus credentials come from; holds references, never the secrets.

    Exactly one source must be set:
    - `bearer_token_file`: a file holding a bearer token;
    - `basic_auth_file`: a file holding `username:password`;
    - `username` with `password_file`: basic auth, password read from a file;
    - `secret_ref`: a Kubernetes Secret key holding a bearer token
      (`secret_scheme="bearer"`) or `username:password` (`secret_scheme="basic"`).
    """

    bearer_token_file: str | None = None
    basic_auth_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    secret_ref: SecretRef | None = None
    secret_scheme: Literal["bearer", "basic"] = "bearer"

    def __post_init__(self) -> None:
        sources = [
            name
            for name, present in (
                ("bearerTokenFile", self.bearer_token_file is not None),
                ("basicAuthFile", self.basic_auth_file is not None),
                ("username/passwordFile", (self.username, self.password_file) != (None, None)),
                ("secretRef", self.secret_ref is not None),
            )
            if present
        ]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            raise SpecError("auth", f"set exactly one credential source (found: {found})")
        if (self.username is None) != (self.password_file is None):
            raise SpecError("auth", "username and passwordFile must be set together")
        if self.secret_scheme not in ("bearer", "basic"):
            raise SpecError("auth.scheme", f"must be bearer or basic, not {self.secret_scheme!r}")
        if self.secret_ref is not None and not (self.secret_ref.name and self.secret_ref.key):
            raise SpecError("auth.secretRef", "both name and key are required")

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> Auth:
        """Build from the resource's camelCase form (see docs/analysis.md)."""
        unknown = sorted(set(spec) - _AUTH_FIELDS)
        if unknown:
            raise SpecError(f"auth.{unknown[0]}", "unknown field")
        ref = spec.get("secretRef")
        secret_ref = None
        if ref is not None:
            if not isinstance(ref, Mapping) or set(ref) - {"name", "key"}:
                raise SpecError("auth.secretRef", "must be a mapping with name and key")
            secret_ref = SecretRef(name=str(ref.get("name", "")), key=str(ref.get("key", "")))
        return cls(
            bearer_token_file=spec.get("bearerTokenFile"),
            basic_auth_file=spec.get("basicAuthFile"),
            username=spec.get("username"),
            password_file=spec.get("passwordFile"),
            secret_ref=secret_ref,
            secret_scheme=spec.get("scheme", "bearer"),
        )

    @property
    def kind(self) -> str:
        """`bearer` or `basic`: safe to show."""
        if self.secret_ref is not None:
            return self.secret_scheme
        return "bearer" if self.bearer_token_file is not None else "basic"

    def authorization(self, secrets: SecretGetter | None = None) -> str:
        """Read the credential now and return the `Authorization` header value."""
        if self.bearer_token_file is not None:
            where = f"bearer token file {self.bearer_token_file}"
            return "Bearer " + _checked(_read_file(self.bearer_token_file), where)
        if self.basic_auth_file is not None:
            where = f"basic auth file {self.basic_auth_file}"
            return _basic(_read_file(self.basic_auth_file), where)
        if self.password_file is not None:
            password = _read_file(self.password_file).rstrip("\r\n")
            return _basic(f"{self.username}:{password}", "username/passwordFile")
        assert self.secret_ref is not None  # guaranteed by __post_init__
        if secrets is None:
            raise SpecError("auth.secretRef", "no secret reader was given to resolve it")
        ref = self.secret_ref
        raw = secrets(ref.name, ref.key)
        where = f"secret {ref.name} key {ref.key}"
        try:
            value = raw.decode("utf-8")
        except (AttributeError, UnicodeDecodeError) as exc:
            raise AnalysisError(f"{where} is not UTF-8 text") from exc
        if self.secret_scheme == "basic":
            return _basic(value, where)
        return "Bearer " + _checked(value, where)


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        # OSError text names the path and the reason, never the content.
        raise AnalysisError(f"cannot read credential file {path}: {exc}") from exc


def _checked(value: str, where: str) -> str:
    value = value.strip()
    if not value:
        raise AnalysisError(f"{where} is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise AnalysisError(f"{where} contains control characters")
    return value


def _basic(userpass: str, where: str) -> str:
    userpass = _checked(userpass, where)
    if ":" not in userpass:
        raise AnalysisError(f"{where} must hold username:password")
    return "Basic " + base64.b64encode(userpass.encode("utf-8")).decode("ascii")


def redact_url(url: str) -> str:
    """The URL without user info, query string or fragment: safe for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PrometheusClient:
    """Instant queries against one Prometheus-compatible HTTP API."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        secrets: SecretGetter | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`retries` extra attempts follow a timeout, connection error or HTTP 502/503/504,
        waiting `backoff * 2**n` seconds; `secrets` resolves `auth.secret_ref`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError("prometheus.address", f"not an http(s) URL: {redact_url(url)}")
        if parts.username or parts.password or parts.query or parts.fragment:
            # URLs end up in logs (httpx logs every request): credentials go in `auth`.
            raise SpecError(
                "prometheus.address",
                f"no user info, query or fragment allowed (use auth): {redact_url(url)}",
            )
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise SpecError("prometheus", "timeout must be > 0, retries and backoff >= 0")
        if auth is not None and auth.secret_ref is not None and secrets is None:
            raise SpecError("auth.secretRef", "no secret reader was given to resolve it")
        self._endpoint = url.rstrip("/") + "/api/v1/query"
        self.url = redact_url(url)
        self._auth = auth
        self._secrets = secrets
        self._retries = retries
        self._backoff = backoff
        self._timeout = timeout
        self._http = _deadline.client(timeout=timeout, transport=transport)
        # Monotonic time by which the current look must be done (see `within`).
        self._deadline: float | None = None
        self._budget = 0.0

    def __repr__(self) -> str:
        auth = self._auth.kind if self._auth else None
        return f"PrometheusClient(url={self.url!r}, auth={auth!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Bound every query made inside the block, retries included, to `seconds` in all.

        A driver ticks under a lease; a slow Prometheus must not hold a tick longer than
        the lease (another process would take over while this one still acts). Attempts
        get what is left of the budget; when it is used up the query fails, saying so.
        """
        outer = self._deadline, self._budget
        self._deadline, self._budget = time.monotonic() + seconds, seconds
        try:
            yield
        finally:
            self._deadline, self._budget = outer

    def _left(self, promql: str) -> float | None:
        """Seconds this query may still take (None: no budget); fails when none are left."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0.05:
            raise self._fail(
                promql,
                f"no answer within this look's time budget of {self._budget:g}s "
                f"(Prometheus too slow; timeout {self._timeout:g}s per attempt)",
            )
        return left

    def _evaluate(self, promql: str, at: float | None) -> tuple[httpx.Response, str | None]:
        """POST an instant query; returns the response and the Authorization value sent
        (so parsing can keep it out of error messages)."""
        headers = {"Accept": "application/json"}
        secret = None
        if self._auth is not None:
            secret = self._auth.authorization(self._secrets)
            headers["Authorization"] = secret
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at:.3f}"
        response = self._post(promql, form, headers)
        return response, secret

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        """Evaluate `promql` at `at` (unix seconds; server time if None).

        Returns the single finite value, or None when there is no data (empty
        vector, NaN, +/-Inf). Raises AnalysisError for anything else.
        """
        response, secret = self._evaluate(promql, at)
        value = self._parse(promql, response, secret)
        log.debug("prometheus %s: %s -> %s", self.url, promql, value)
        return value

    def query_by(self, promql: str, label: str, *, at: float | None = None) -> dict[str, float]:
        """Evaluate a query grouped by one label (`sum by (le)`, `sum by (pod)`).

        Returns {label value: value}; series with NaN/Inf values are left out, and an
        empty vector is an empty mapping (no data). A series without the label, two
        series with the same value of it, or a non-vector answer is an AnalysisError.
        """
        response, secret = self._evaluate(promql, at)
        out: dict[str, float] = {}
        for sample in self._parse_vector(promql, response, secret):
            metric = sample.get("metric")
            key = metric.get(label) if isinstance(metric, dict) else None
            if not isinstance(key, str):
                raise self._fail(promql, f"a series has no {label!r} label: group by ({label})")
            if key in out:
                raise self._fail(promql, f"two series with {label}={key!r}: group by ({label})")
            value = self._sample(promql, sample.get("value"))
            if value is not None:
                out[key] = value
        log.debug("prometheus %s: %s -> %d series", self.url, promql, len(out))
        return out

    def _parse_vector(
        self, promql: str, response: httpx.Response, secret: str | None
    ) -> list[dict[str, Any]]:
        body = self._body(promql, response, secret)
        data = body["data"]
        if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise self._fail(promql, "a grouped query must return an instant vector")
        samples = data["result"]
        if not all(isinstance(s, dict) for s in samples):
            raise self._fail(promql, "malformed answer: vector sample is not an object")
        return samples

    def _post(self, promql: str, form: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        # POST keeps long queries within URL limits and out of access logs.
        attempts = self._retries + 1
        for attempt in range(attempts):
            if attempt:
                pause = self._backoff * 2 ** (attempt - 1)
                left = self._left(promql)
                time.sleep(pause if left is None else min(pause, left / 2))
            left = self._left(promql)
            timeout = self._timeout if left is None else min(self._timeout, left)
            try:
                # The whole answer within `timeout` (not each read): a Prometheus or proxy
                # trickling its answer must not hold the tick past its budget.
                response = _deadline.post(
                    self._http, self._endpoint, seconds=timeout, data=form, headers=headers
                )
            except httpx.TransportError as exc:
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.debug("prometheus %s attempt %d/%d: %s", self.url, attempt + 1, attempts, cause)
                # A slow server is not an unreachable one: say which, so the operator
                # looks at Prometheus' load rather than at the network.
                what = (
                    f"prometheus at {self.url} gave no answer within {timeout:.2g}s: {cause}"
                    if isinstance(exc, httpx.TimeoutException)
                    else f"prometheus unreachable at {self.url}: {cause}"
                )
                if attempt + 1 == attempts:
                    raise AnalysisError(f"{what} (after {attempts} attempts)") from exc
                if left is not None and self._deadline - time.monotonic() <= 0.05:
                    raise AnalysisError(
                        f"{what} (after {attempt + 1} of {attempts} attempts: this look's "
                        f"time budget of {self._budget:g}s is used up)"
                    ) from exc
                continue
            if response.status_code in _RETRY_STATUSES and attempt + 1 < attempts:
                log.debug("prometheus %s: HTTP %d, retrying", self.url, response.status_code)
                continue
            return response
        raise AssertionError("unreachable: the loop returns or raises")

    def _fail(self, promql: str, what: str) -> AnalysisError:
        return AnalysisError(f"prometheus at {self.url}, query {promql!r}: {what}")

    def _parse(self, promql: str, response: httpx.Response, secret: str | None) -> float | None:
        data = self._body(promql, response, secret)["data"]
        return self._value(promql, data)

    def _body(self, promql: str, response: httpx.Response, secret: str | None) -> dict[str, Any]:
        """The checked JSON body of a successful answer, with a `data` object."""
        code = response.status_code
        if code in (401, 403):
            raise self._fail(promql, f"credentials rejected (HTTP {code})")
        try:
            body = response.json()
        except ValueError:
            snippet = _snippet(response.text, secret)
            raise self._fail(promql, f"HTTP {code}, not a JSON answer: {snippet!r}") from None
        if not isinstance(body, dict):
            raise self._fail(promql, f"HTTP {code}, malformed answer (not a JSON object)")
        if body.get("status") == "error":
            kind = body.get("errorType", "error")
            detail = _snippet(str(body.get("error", "")), secret)
            raise self._fail(promql, f"HTTP {code}, {kind}: {detail}")
        if code != 200 or body.get("status") != "success":
            raise self._fail(promql, f"HTTP {code}, status {body.get('status')!r}, not success")
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._fail(promql, "malformed answer: no data object")
        return body

    def _value(self, promql: str, data: dict[str, Any]) -> float | None:
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return self._sample(promql, result)
        if kind == "vector":
            if not isinstance(result, list):
                raise self._fail(promql, "malformed answer: vector result is not a list")
            if not result:
                return None
            if len(result) > 1:
                labels = ", ".join(_labels(s) for s in result[:3])
                more = ", ..." if len(result) > 3 else ""
                raise self._fail(
                    promql,
                    f"returned {len(result)} series ({labels}{more}); a check needs one value: "
                    "aggregate the query, e.g. sum(...)",
                )
            sample = result[0]
            if not isinstance(sample, dict):
                raise self._fail(promql, "malformed answer: vector sample is not an object")
            return self._sample(promql, sample.get("value"))
        if kind == "matrix":
            raise self._fail(
                promql,
                "returned a range vector; use an instant query, e.g. wrap the range "
                "selector in increase(...) or rate(...)",
            )
        raise self._fail(promql, f"unexpected result type {kind!r}; need vector or scalar")

    def _sample(self, promql: str, pair: object) -> float | None:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
            raise self._fail(promql, f"malformed sample {pair!r}")
        try:
            value = float(pair[1])
        except ValueError:
            raise self._fail(promql, f"sample value {pair[1]!r} is not a number") from None
        # NaN (e.g. 0/0 when nothing happened) and infinities carry no evidence.
        return value if math.isfinite(value) else None


def _labels(sample: object) -> str:
    metric = sample.get("metric") if isinstance(sample, dict) else None
    if not isinstance(metric, dict):
        return "{?}"
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def _snippet(text: str, secret: str | None) -> str:
    if secret:
        # A misbehaving proxy may echo the request; never let a credential through.
        for part in (secret, secret.split(" ", 1)[-1]):
            text = text.replace(part, "<redacted>")
    return text.strip()[:_BODY_SNIPPET]
