"""Find or build the Traefik binary of the pinned version (the test bed's L7 proxy).

Traefik is built from its published Go module through a wrapper module, like the control
plane. Three of its dependencies are not served by the Go module proxy, so the wrapper
replaces each with a small local module generated here (``shims/`` next to the wrapper):

``github.com/traefik/traefik/dynamic/ext``
    A nested module of Traefik's repository, left out of the module zip. Upstream it holds
    three empty extension structs; the shim declares the same.
``github.com/abbot/go-http-auth`` (Traefik replaces it with a ``containous`` fork)
    The shim is the published upstream v0.4.0, unchanged, plus one file adding the two
    functions the fork adds and Traefik's basic/digest auth middlewares call
    (``CheckSecret``, ``DigestAuth.RequireAuthStale``), written against upstream's own
    hash comparison.
``github.com/go-acme/lego/v5`` (the ACME client)
    Its ``providers/dns`` package imports every DNS provider, and a dozen of those import
    cloud SDKs the proxy refuses. The shim is the published lego module with those
    providers' packages removed and, in the generated provider switch, their cases
    answering "not available in this build". Every other provider, and ACME itself, is
    untouched. The test bed serves plain HTTP and never asks for a certificate.

Resolution order: ``CANARYCTL_TRAEFIK`` (a path), ``CANARYCTL_BIN_DIR``/traefik, the cache
(``<cache>/traefik-<version>/bin/traefik``), then a build into that cache.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv import gomodule, versions
from canaryctl.testenv.binaries import Progress

NAME = "traefik"

_EXT_GO = """\
// Package ext is a local stand-in for Traefik's nested module of the same path, which the
// Go module proxy does not serve. Upstream it declares these empty extension points.
package ext

// HTTP is a dynamic.HTTP extension.
type HTTP struct{}

// Router is a dynamic.Router extension.
type Router struct{}

// RouterIng is a RouterIng extension for ingress provider annotations.
type RouterIng struct{}

// ToRouter converts RouterIng to a Router.
func (r RouterIng) ToRouter() Router { return Router{} }
"""

# Added to upstream go-http-auth v0.4.0: the two functions Traefik's fork provides.
_AUTH_FORK_GO = """\
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CheckSecret reports whether password matches the hashed secret (MD5-crypt, {SHA} or
// bcrypt), picking the comparison by the secret's prefix exactly as BasicAuth.CheckAuth does.
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, c := range compareFuncs[1:] {
		if strings.HasPrefix(secret, c.prefix) {
			compare = c.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale is RequireAuth with stale=true: the client's nonce expired, so it may
// retry with a fresh one without asking the user again (RFC 2617, section 3.2.1).
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	if len(a.clients) > a.ClientCacheSize+a.ClientCacheTolerance {
		a.Purge(a.ClientCacheTolerance * 2)
	}
	nonce := RandomKey()
	a.clients[nonce] = &digest_client{nc: 0, last_seen: time.Now().UnixNano()}
	w.Header().Set(contentType, a.Headers.V().UnauthContentType)
	w.Header().Set(a.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm="MD5", `+
			`qop="auth", stale=true`, a.Realm, nonce, a.Opaque))
	w.WriteHeader(a.Headers.V().UnauthCode)
	w.Write([]byte(a.Headers.V().UnauthResponse))
}
"""

_UNAVAILABLE_GO = """\
package dns

import "fmt"

// unavailable answers for a DNS provider whose cloud SDK the Go module proxy does not serve;
// this build of Traefik (canaryctl's test bed) was made without it.
func unavailable(name string) error {
	return fmt.Errorf("DNS provider %q is not available in this build of Traefik "+
		"(its SDK is not served by the Go module proxy); use an official Traefik build", name)
}
"""


def home() -> Path:
    """Cache folder of the pinned Traefik version (its binary and its build folder)."""
    return gomodule.home(BINARY)


def find() -> Path | None:
    """The Traefik binary if one is configured or cached; None when it must be built."""
    return gomodule.find(BINARY)


def ensure(progress: Progress = print) -> Path:
    """Return the Traefik binary, building it from the pinned Go module the first time."""
    return gomodule.ensure(BINARY, progress)


def build(progress: Progress = print) -> Path:
    """Build Traefik into the cache through a wrapper module with the three local shims."""
    return gomodule.build(BINARY, progress)


def write_shims(go: str, gomod: dict, workdir: Path, progress: Progress) -> str:
    """Write the three local shims under ``workdir/shims``; return the wrapper's go.mod.

    ``gomod`` is ``go mod edit -json`` of Traefik's go.mod (the hook of :class:`GoBinary`).
    """
    lego_version = _required_version(gomod, versions.LEGO_MODULE)
    shims = workdir / "shims"
    _write_ext_shim(shims / "ext")
    auth_module, auth_version = versions.GO_HTTP_AUTH_UPSTREAM
    auth_src = gomodule.download(go, auth_module, auth_version, workdir, progress, NAME)
    _write_auth_shim(auth_src, shims / "go-http-auth")
    lego_src = gomodule.download(go, versions.LEGO_MODULE, lego_version, workdir, progress, NAME)
    _write_lego_shim(lego_src, shims / "lego", versions.LEGO_DNS_PROVIDERS_WITHOUT_SDK)
    local = {
        versions.TRAEFIK_EXT_MODULE: "./shims/ext",
        versions.GO_HTTP_AUTH_UPSTREAM[0]: "./shims/go-http-auth",
        versions.LEGO_MODULE: "./shims/lego",
    }
    return wrapper_gomod(gomod, local)


BINARY = gomodule.GoBinary(
    name=NAME,
    module=versions.TRAEFIK_MODULE,
    version=versions.TRAEFIK_VERSION,
    package=f"{versions.TRAEFIK_MODULE}/cmd/traefik",
    title="Traefik",
    version_var=f"{versions.TRAEFIK_MODULE}/pkg/version.Version",
    wrapper=write_shims,
)


def wrapper_gomod(gomod: dict, local: dict[str, str]) -> str:
    """The wrapper's go.mod: Traefik's replace and exclude directives, with ``local`` paths.

    ``gomod`` is ``go mod edit -json`` of Traefik's go.mod. A replace of a module named in
    ``local`` points at that folder instead (Traefik's own targets are not served); every
    other replace and exclude is kept, so the build selects exactly Traefik's versions.
    """
    replaces: dict[str, str] = {}
    for rep in gomod.get("Replace") or []:
        old, new = rep["Old"]["Path"], rep["New"]
        replaces[old] = f"{new['Path']} {new['Version']}" if new.get("Version") else new["Path"]
    missing = [m for m in local if m not in replaces and m != versions.LEGO_MODULE]
    if missing:
        raise TestenvError(
            f"Traefik's go.mod no longer replaces {', '.join(missing)}: the local shims of "
            "canaryctl.testenv.traefik_build need updating for this Traefik version"
        )
    for old, new in replaces.items():
        if old not in local and " " not in new:
            raise TestenvError(
                f"Traefik's go.mod replaces {old} with the folder {new!r}, which exists only in "
                "its repository: add a local shim for it"
            )
    replaces.update(local)
    lines = [
        "module canaryctl.local/traefik",
        "",
        f"go {gomod['Go']}",
        "",
        f"require {gomod['Module']['Path']} {versions.TRAEFIK_VERSION}",
        "",
        "replace (",
        *(f"\t{old} => {new}" for old, new in sorted(replaces.items())),
        ")",
    ]
    excludes = gomod.get("Exclude") or []
    if excludes:
        lines += ["", "exclude (", *(f"\t{e['Path']} {e['Version']}" for e in excludes), ")"]
    return "\n".join(lines) + "\n"


def rewrite_dns_providers(source: str, dropped: tuple[str, ...]) -> str:
    """Lego's generated provider switch without the ``dropped`` providers' packages.

    Each dropped provider's import goes, and its ``case`` returns the "not available in this
    build" error instead of constructing the provider. Raises when a name is not found, so
    a lego upgrade that renames a provider fails the build loudly instead of silently.
    """
    for name in dropped:
        imp = re.compile(rf'^\s*"github\.com/go-acme/lego/v\d+/providers/dns/{name}"\n', re.M)
        source, n_imp = imp.subn("", source)
        call = re.compile(rf"^(\s*)return {name}\.NewDNSProvider\(\)$", re.M)
        source, n_call = call.subn(rf'\1return nil, unavailable("{name}")', source)
        if n_imp != 1 or n_call != 1:
            raise TestenvError(
                f"lego's providers/dns has no provider {name!r} to drop (import found "
                f"{n_imp}x, constructor {n_call}x): update LEGO_DNS_PROVIDERS_WITHOUT_SDK"
            )
    return source


def _required_version(gomod: dict, module: str) -> str:
    for req in gomod.get("Require") or []:
        if req["Path"] == module:
            return req["Version"]
    raise TestenvError(f"Traefik's go.mod does not require {module}; update the lego shim")


def _copy_module(src: Path, dst: Path, skip: set[Path] = frozenset()) -> None:
    """Copy a module from the read-only module cache into a writable folder."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if Path(folder, n) in skip or n.endswith("_test.go")}

    shutil.copytree(src, dst, ignore=ignore)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _write_ext_shim(dst: Path) -> None:
    dst.mkdir(parents=True)
    (dst / "go.mod").write_text(f"module {versions.TRAEFIK_EXT_MODULE}\n\ngo 1.24\n")
    (dst / "ext.go").write_text(_EXT_GO)


def _write_auth_shim(src: Path, dst: Path) -> None:
    _copy_module(src, dst, skip={src / "examples"})
    (dst / "go.mod").write_text(f"module {versions.GO_HTTP_AUTH_UPSTREAM[0]}\n\ngo 1.24\n")
    (dst / "fork_additions.go").write_text(_AUTH_FORK_GO)


def _write_lego_shim(src: Path, dst: Path, dropped: tuple[str, ...]) -> None:
    providers = src / "providers" / "dns"
    _copy_module(src, dst, skip={providers / name for name in dropped} | {src / "docs"})
    switch = dst / "providers" / "dns" / "zz_gen_dns_providers.go"
    switch.write_text(rewrite_dns_providers(switch.read_text(), dropped))
    (dst / "providers" / "dns" / "zz_unavailable.go").write_text(_UNAVAILABLE_GO)
