"""The Traefik build's pure parts: the wrapper go.mod and the lego provider switch."""

from __future__ import annotations

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import versions
from canaryctl.testenv.traefik_build import rewrite_dns_providers, wrapper_gomod

SWITCH = """package dns

import (
\t"fmt"

\t"github.com/go-acme/lego/v5/challenge"
\t"github.com/go-acme/lego/v5/providers/dns/alidns"
\t"github.com/go-acme/lego/v5/providers/dns/cloudflare"
)

func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
\tswitch name {
\tcase "alidns":
\t\treturn alidns.NewDNSProvider()
\tcase "cloudflare":
\t\treturn cloudflare.NewDNSProvider()
\tdefault:
\t\treturn nil, fmt.Errorf("unrecognized DNS provider: %s", name)
\t}
}
"""

GOMOD = {
    "Module": {"Path": "github.com/traefik/traefik/v3"},
    "Go": "1.26.0",
    "Require": [{"Path": "github.com/go-acme/lego/v5", "Version": "v5.4.1"}],
    "Replace": [
        {
            "Old": {"Path": "github.com/traefik/traefik/dynamic/ext"},
            "New": {"Path": "./pkg/config/dynamic/ext"},
        },
        {
            "Old": {"Path": "github.com/abbot/go-http-auth"},
            "New": {"Path": "github.com/containous/go-http-auth", "Version": "v0.4.1-0.2026"},
        },
        {
            "Old": {"Path": "github.com/gorilla/mux"},
            "New": {"Path": "github.com/containous/mux", "Version": "v0.0.0-2025"},
        },
    ],
    "Exclude": [{"Path": "github.com/tencentcloud/tencentcloud-sdk-go", "Version": "v3.0.83"}],
}

LOCAL = {
    versions.TRAEFIK_EXT_MODULE: "./shims/ext",
    versions.GO_HTTP_AUTH_UPSTREAM[0]: "./shims/go-http-auth",
    versions.LEGO_MODULE: "./shims/lego",
}


def test_dropped_providers_lose_their_import_and_answer_not_available() -> None:
    out = rewrite_dns_providers(SWITCH, ("alidns",))
    assert "providers/dns/alidns" not in out
    assert 'return nil, unavailable("alidns")' in out
    # Every other provider is untouched.
    assert '"github.com/go-acme/lego/v5/providers/dns/cloudflare"' in out
    assert "return cloudflare.NewDNSProvider()" in out


def test_a_provider_lego_no_longer_has_fails_the_build_loudly() -> None:
    with pytest.raises(TestenvError, match="no provider 'gone'"):
        rewrite_dns_providers(SWITCH, ("gone",))


def test_wrapper_keeps_traefiks_replaces_and_excludes_and_points_shimmed_ones_at_folders() -> None:
    text = wrapper_gomod(GOMOD, LOCAL)
    assert "go 1.26.0" in text
    assert f"require github.com/traefik/traefik/v3 {versions.TRAEFIK_VERSION}" in text
    assert "\tgithub.com/gorilla/mux => github.com/containous/mux v0.0.0-2025" in text
    assert "\tgithub.com/abbot/go-http-auth => ./shims/go-http-auth" in text
    assert "\tgithub.com/traefik/traefik/dynamic/ext => ./shims/ext" in text
    assert "\tgithub.com/go-acme/lego/v5 => ./shims/lego" in text
    assert "containous/go-http-auth" not in text
    assert "./pkg/config" not in text
    assert "\tgithub.com/tencentcloud/tencentcloud-sdk-go v3.0.83" in text


def test_wrapper_refuses_a_new_repository_folder_replace_it_has_no_shim_for() -> None:
    gomod = {
        **GOMOD,
        "Replace": [
            *GOMOD["Replace"],
            {"Old": {"Path": "example.com/x"}, "New": {"Path": "./internal/x"}},
        ],
    }
    with pytest.raises(TestenvError, match=r"example\.com/x"):
        wrapper_gomod(gomod, LOCAL)


def test_wrapper_notices_when_traefik_stops_replacing_a_shimmed_module() -> None:
    gomod = {**GOMOD, "Replace": GOMOD["Replace"][1:]}
    with pytest.raises(TestenvError, match="no longer replaces"):
        wrapper_gomod(gomod, LOCAL)
