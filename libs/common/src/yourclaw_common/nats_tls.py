"""A local certificate authority and a NATS server certificate it signs.

For docker compose with `NATS_TLS=1` and for tests: production takes its
server certificate from cert-manager (deploy/k8s/production/nats-tls.yaml).
Clients trust only this CA (`NATS_TLS_CA_FILE`), so a server holding a
certificate from anywhere else, a public CA included, is refused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["NatsTlsFiles", "write_server_tls"]

_VALID_DAYS = 825  # the longest validity TLS clients accept for a server cert


@dataclass(frozen=True)
class NatsTlsFiles:
    """Where the CA certificate and the server's certificate and key are."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def in_dir(cls, directory: Path) -> NatsTlsFiles:
        """The file names `write_server_tls` uses in `directory`."""
        return cls(
            ca_file=directory / "ca.pem",
            cert_file=directory / "server.pem",
            key_file=directory / "server-key.pem",
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def write_server_tls(
    directory: Path, names: Iterable[str], *, common_name: str = "YourClaw NATS CA"
) -> NatsTlsFiles:
    """A new CA and a server certificate for `names` (DNS names or IP
    addresses), written to `directory`. Keys are 0600; the CA key is kept
    beside them only to sign a new server certificate later."""
    directory.mkdir(parents=True, exist_ok=True)
    files = NatsTlsFiles.in_dir(directory)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = list(names)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key_file, server_key)
    _write_key(directory / "ca-key.pem", ca_key)
    return files


def cli(argv: list[str] | None = None) -> None:
    """`python -m yourclaw_common.nats_tls DIR --name nats`: a CA and a server
    certificate in DIR (kept if they are there already)."""
    parser = argparse.ArgumentParser(
        prog="python -m yourclaw_common.nats_tls",
        description="Write a local CA (ca.pem) and a NATS server certificate "
        "it signs (server.pem, server-key.pem) into DIR, unless DIR has them.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--name",
        action="append",
        required=True,
        help="a DNS name or IP address clients use to reach the server",
    )
    args = parser.parse_args(argv)
    files = NatsTlsFiles.in_dir(args.directory)
    if files.ca_file.exists() and files.cert_file.exists():
        sys.stdout.write(f"{files.ca_file} exists: keeping it\n")
        return
    write_server_tls(args.directory, args.name)
    sys.stdout.write(f"wrote {files.ca_file}, {files.cert_file}, {files.key_file}\n")


if __name__ == "__main__":
    cli()
