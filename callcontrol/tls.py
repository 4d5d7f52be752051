"""TLS certificates and server contexts: SIP over TLS (the PBX) and the console over HTTPS.

An operator with a real certificate sets its files (``sip_tls_cert``/``sip_tls_key``,
``console_tls_cert``/``console_tls_key``). For development and trials a self-signed one
is generated here (an ECDSA P-256 key, the names and addresses it serves as subject
alternative names): by ``callcontrol pbx up`` for SIP when ``sip_tls`` is on and no
certificate is configured, by ``callcontrol tls self-signed`` for the console. Peers
must then trust that very certificate (it is its own CA): sipp/softphones by its file,
browsers by an exception.

The private key is written 0600 before a byte of it exists on disk, never logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callcontrol.errors import ConfigError

__all__ = ["default_names", "ensure_self_signed", "server_context", "write_self_signed"]

VALID_DAYS = 825  # the longest validity Apple's clients accept for a server certificate


def default_names(*hosts: str) -> list[str]:
    """localhost, 127.0.0.1, this machine's name and ``hosts`` (wildcard addresses left out)."""
    names = ["localhost", "127.0.0.1", socket.gethostname(), *hosts]
    return [n for n in dict.fromkeys(names) if n and n not in ("0.0.0.0", "::")]


def write_self_signed(cert_path: Path, key_path: Path, names: Iterable[str]) -> None:
    """A new key and a self-signed server certificate for ``names`` (DNS names or IPs)."""
    names = list(dict.fromkeys(names))
    if not names:
        raise ConfigError("a certificate needs at least one name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callcontrol (self-signed)"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # its own CA, so that a peer can trust it by its file (Python's ssl, OpenSSL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_self_signed(cert_path: Path, key_path: Path, names: Iterable[str]) -> bool:
    """Generate the pair unless both files exist; whether it was generated."""
    if cert_path.exists() and key_path.exists():
        return False
    write_self_signed(cert_path, key_path, names)
    return True


def server_context(cert_path: Path, key_path: Path, what: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context from PEM files; a one-line ConfigError naming ``what``
    (the settings) when a file is missing, unreadable or not a matching pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc.filename} does not exist") from None
    except PermissionError as exc:
        raise ConfigError(f"{what}: cannot read {exc.filename} (permission denied)") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{what}: {cert_path} and {key_path} are not a PEM certificate and its key "
            f"({exc.reason or exc})"
        ) from None
    return context


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically with ``mode`` set before any of it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
