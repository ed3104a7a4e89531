"""Certificates a TLS test makes for itself with Debian's openssl: a CA, a server certificate for
an IP address, and a client certificate (for tls_client_ca)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path, server_ip: str) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mkd test CA",
             cwd=directory)
    for name, subject, extension in (
        ("server", f"/CN={server_ip}", f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth"),
        ("client", "/CN=mkd test client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(extension + "\n")
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    return Certificates(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                        server_key=directory / "server.key", client_cert=directory / "client.pem",
                        client_key=directory / "client.key")
