"""canaryctl.providers: observations from Prometheus and webhooks.

Re-exports the public API; see docs/analysis.md for templates, auth and payloads.
"""

from canaryctl.providers.prometheus import Auth, PrometheusClient, SecretGetter, SecretRef
from canaryctl.providers.templates import (
    BUILTIN_CHECKS,
    ERROR_COUNTS,
    CheckResult,
    CountTemplate,
    MetricCheck,
    MetricSource,
    Target,
    builtin_check,
    error_batch,
    evaluate,
    fetch_batch,
    latency_batch,
    latency_counts,
    render,
    run_check,
    variables,
)
from canaryctl.providers.webhooks import (
    GATES,
    HookType,
    Webhook,
    WebhookClient,
    WebhookResult,
)

__all__ = [
    "BUILTIN_CHECKS",
    "ERROR_COUNTS",
    "GATES",
    "Auth",
    "CheckResult",
    "CountTemplate",
    "HookType",
    "MetricCheck",
    "MetricSource",
    "PrometheusClient",
    "SecretGetter",
    "SecretRef",
    "Target",
    "Webhook",
    "WebhookClient",
    "WebhookResult",
    "builtin_check",
    "error_batch",
    "evaluate",
    "fetch_batch",
    "latency_batch",
    "latency_counts",
    "render",
    "run_check",
    "variables",
]
