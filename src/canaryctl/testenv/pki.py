"""Certificates and keys for the local control plane (a throwaway CA per cluster)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file the components need."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    #: The API server's client certificate towards kubelets (logs, exec, port-forward).
    kubelet_client_cert: Path
    kubelet_client_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject if ca_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def generate(folder: Path, service_ip: str = "10.96.0.1", addresses: tuple[str, ...] = ()) -> Pki:
    """Create a CA, the API server's serving cert, an admin client cert and SA signing keys.

    `addresses`: more names or IPs the API server is reached at (the node's address)."""
    folder.mkdir(parents=True, exist_ok=True)

    def cert_pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canaryctl-testenv-ca")])
    ca = _issue(ca_name, ca_key, None, ca_key, is_ca=True)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server_key,
        ca,
        ca_key,
        server_names=(
            "127.0.0.1",
            "localhost",
            service_ip,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            *(a for a in addresses if a not in ("127.0.0.1", "localhost")),
        ),
    )
    # O=system:masters is bound to cluster-admin by the API server's bootstrap policy.
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "canaryctl-admin"),
            ]
        ),
        admin_key,
        ca,
        ca_key,
        client=True,
    )
    # The kubelet authorizes the API server's calls with a SubjectAccessReview; no default
    # binding grants the kubelet API (nodes/proxy) to a client, system:masters has it all.
    kubelet_client_key = ec.generate_private_key(ec.SECP256R1())
    kubelet_client = _issue(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
            ]
        ),
        kubelet_client_key,
        ca,
        ca_key,
        client=True,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Pki(
        ca_cert=_write(folder / "ca.crt", cert_pem(ca)),
        ca_key=_write(folder / "ca.key", _pem_key(ca_key)),
        server_cert=_write(folder / "apiserver.crt", cert_pem(server)),
        server_key=_write(folder / "apiserver.key", _pem_key(server_key)),
        admin_cert=_write(folder / "admin.crt", cert_pem(admin)),
        admin_key=_write(folder / "admin.key", _pem_key(admin_key)),
        sa_key=_write(folder / "sa.key", _pem_key(sa_key)),
        sa_pub=_write(folder / "sa.pub", sa_pub),
        kubelet_client_cert=_write(folder / "kubelet-client.crt", cert_pem(kubelet_client)),
        kubelet_client_key=_write(folder / "kubelet-client.key", _pem_key(kubelet_client_key)),
    )


def issue(
    folder: Path,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """A certificate signed by the CA in ``folder``: a client one, or a serving one when
    ``server_names`` are given. Written as ``<name>.crt`` and ``<name>.key``."""
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        x509.Name(attrs),
        key,
        ca,
        ca_key,
        server_names=server_names,
        client=not server_names,
    )
    crt = _write(folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    return crt, _write(folder / f"{name}.key", _pem_key(key))
