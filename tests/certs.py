"""Test certificates made with ``cryptography``: a CA, and certificates it signs.

Every certificate :func:`issue` makes is for ``localhost`` and ``127.0.0.1``, so it
serves both the TLS-secured Dask cluster (``test_cluster_tls.py``) and Azurite's
HTTPS endpoint (``test_azure_identity.py``). Clients trust the CA's PEM file.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["issue", "make_ca"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write(folder: Path, stem: str, cert: x509.Certificate, key=None) -> dict[str, str]:
    paths = {"cert": str(folder / f"{stem}.pem")}
    Path(paths["cert"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        paths["key"] = str(folder / f"{stem}.key")
        Path(paths["key"]).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def make_ca(folder: Path, cn: str):
    """A self-signed CA: ``(key, certificate, path of its PEM file)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(cn, _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert, _write(folder, cn, cert)["cert"]


def issue(folder: Path, stem: str, ca_key, ca_cert) -> dict[str, str]:
    """A certificate for localhost/127.0.0.1 signed by the CA: {"cert", "key"} paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(stem, ca_cert.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return _write(folder, stem, cert, key)
