"""OPC UA security of the client: certificates, the security policy, server pinning and the user identity.

OPC UA Part 2/4: ``Basic256Sha256`` with ``Sign`` or ``SignAndEncrypt`` needs the client's application instance
certificate and private key (PEM or DER, told apart by content, not by the file's suffix). The server's certificate
is pinned with ``server_certificate``: the client refuses any other before it opens a secure channel (without a pin
it takes whatever the server's endpoint list presents: trust on first use, no protection against a man in the
middle). Which clients a server trusts is the server's own trust list (the simulator's:
``edge_agent/simulator/opcua_server.py``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from schemas._optional import needs_extra

from .config import OpcUaDevice, OpcUaSecurity

with needs_extra("opcua", "an OPC UA device"):
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from asyncua.crypto.uacrypto import CertProperties
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["POLICIES", "application_uri", "certificate", "check_pin", "der", "secure_client"]

log = logging.getLogger(__name__)

#: The security policies a gateway file may name (OpcUaSecurity.policy) -> asyncua's implementation.
POLICIES = {"Basic256Sha256": SecurityPolicyBasic256Sha256}
_FALLBACK_URI = "urn:cems:edge-agent"


def _is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN")


def certificate(path: Path, password: str | None = None) -> CertProperties:
    """A certificate or key file for asyncua, which tells PEM from DER by the suffix: sniff the content instead."""
    head = Path(path).read_bytes()[:64]
    return CertProperties(str(path), extension="pem" if _is_pem(head) else "der", password=password)


def der(path: Path) -> bytes:
    """A certificate file (PEM or DER) as DER bytes, the form an endpoint description carries."""
    data = Path(path).read_bytes()
    return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER) if _is_pem(data) else data


def application_uri(cert_path: Path) -> str | None:
    """The URI in a certificate's subjectAltName: OPC UA servers reject a client whose announced application URI is
    not in its certificate."""
    data = Path(cert_path).read_bytes()
    cert = x509.load_pem_x509_certificate(data) if _is_pem(data) else x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def check_pin(client: Client, pinned: Path, mode: ua.MessageSecurityMode, policy_uri: str) -> None:
    """Compare the certificate the server's endpoint presents with the pinned one before opening a secure channel:
    with the wrong key the server cannot decrypt OpenSecureChannel and just never answers, so without this check a
    wrong pin would only show as a timeout. Raises :class:`ConnectionError` naming both fingerprints."""
    endpoint = Client.find_endpoint(await client.connect_and_get_server_endpoints(), mode, policy_uri)
    presented = endpoint.ServerCertificate or b""
    presented = presented[: int.from_bytes(presented[2:4], "big") + 4]  # first certificate of a chain (DER SEQUENCE)
    expected = der(pinned)
    if presented != expected:
        raise ConnectionError(f"server certificate sha256:{hashlib.sha256(presented).hexdigest()[:16]} is not the "
                              f"pinned {pinned} (sha256:{hashlib.sha256(expected).hexdigest()[:16]})")


async def secure_client(client: Client, device: OpcUaDevice) -> None:
    """Set ``client`` up for ``device``'s security: application URI, policy and mode with the client certificate, the
    server pin (checked now, over an unsecured GetEndpoints), and the user identity."""
    sec: OpcUaSecurity = device.security
    if sec.secured:
        assert sec.certificate is not None and sec.private_key is not None  # OpcUaSecurity checked that
        client.application_uri = sec.application_uri or application_uri(sec.certificate) or _FALLBACK_URI
        password = sec.private_key_password.get_secret_value() if sec.private_key_password else None
        policy = POLICIES[sec.policy]
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        if sec.server_certificate is not None:
            await check_pin(client, sec.server_certificate, mode, policy.URI)
        await client.set_security(
            policy, certificate(sec.certificate), certificate(sec.private_key, password),
            server_certificate=certificate(sec.server_certificate) if sec.server_certificate else None, mode=mode)
    elif sec.application_uri:
        client.application_uri = sec.application_uri
    if sec.username is not None:
        assert sec.password is not None  # OpcUaSecurity checked that
        if not sec.secured:
            log.warning("device %s: user %s logs in over an unsecured channel", device.id, sec.username)
        client.set_user(sec.username)
        client.set_password(sec.password.get_secret_value())
