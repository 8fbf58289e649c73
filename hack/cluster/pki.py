"""The cluster's CA, serving and client certificates, service-account keys and kubeconfigs.

Kept across restarts: generating RSA keys is the slow part of a warm start."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import realnode


def write_pki(pki: Path) -> None:
    """CA, apiserver serving cert, client certs per component, service-account key pair.

    Kept across restarts: generating RSA keys is the slow part of a warm start.
    """
    if not (pki / "done").exists():
        write_ca_and_keys(pki)
    # Issued when missing, so a state dir from before the real node gains them.
    for file, common, org in CLIENT_CERTS:
        if not (pki / f"{file}.crt").exists():
            issue_cert(pki, file, common, org)


# file, common name (the user), organization (the group) of each client certificate.
CLIENT_CERTS = (
    ("admin", "admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", None),
    ("scheduler", "system:kube-scheduler", None),
    ("kwok", "kwok", "system:masters"),
    ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
    ("node", f"system:node:{realnode.node_name()}", "system:nodes"),
    ("kube-proxy", "system:kube-proxy", None),
    # The NetworkPolicy engine reads every Pod, Namespace and NetworkPolicy (realnode.py).
    ("kube-router", "system:kube-router", "system:masters"),
    # Prometheus lists and watches Pods only (clusterprometheus.py grants it that).
    ("prometheus", "testapp:prometheus", None),
)


def x509_name(common: str, org: str | None = None):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def save_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def write_ca_and_keys(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(x509_name("testapp-local-ca"))
        .issuer_name(x509_name("testapp-local-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    save_key(ca_key, pki / "ca.key")
    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    issue_cert(pki, "apiserver", "kube-apiserver", None, server=True)
    # Service-account tokens are signed with RSA (the apiserver's default algorithm).
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save_key(sa_key, pki / "sa.key")
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (pki / "done").touch()


def issue_cert(pki: Path, file: str, common: str, org: str | None, server: bool = False) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509_name(common, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    save_key(key, pki / f"{file}.key")
    (pki / f"{file}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testapp-local",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "testapp-local", "context": {"cluster": "testapp-local", "user": user}}
        ],
        "current-context": "testapp-local",
    }
    # JSON is valid YAML, and every kubeconfig reader accepts it.
    path.write_text(json.dumps(config, indent=2))
