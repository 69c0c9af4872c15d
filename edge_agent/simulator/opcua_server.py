"""An OPC UA server that behaves like the CEMS racks of ``n`` stacks: each (simulated) second it publishes
the generator's readings (:mod:`.generate`) as variables, with an analyser status word.

Address space, namespace ``urn:cems:simulator``: one object ``stack{k}`` per stack holding a Double
variable ``stack{k}.{channel}`` per generator channel (string node ids, so a gateway file can name them
without browsing) and a UInt16 ``stack{k}.status`` (bit 0 calibration, bit 1 maintenance, bit 2 fault,
the Modbus simulator's bits). Every value carries the *simulated* time as its SourceTimestamp (``start_ns``
+ t seconds) and the wall clock as its ServerTimestamp, so a client that stamps readings with the source
time reproduces the generator's series exactly, whatever the publishing speed.

A communication loss (flag B) is written as a Bad status code (BadCommunicationError) with no value, as
an OPC UA server reports a device it cannot reach; unlike the Modbus simulator, which has no other way
to say it, it does not set the fault bit. A reading flagged C, M or D sets the matching status bit.

Security (:class:`ServerSecurity`): Basic256Sha256 endpoints with the server's certificate; with
``trusted_clients`` only those client certificates are accepted (the asyncua server otherwise accepts
any well-formed certificate). :func:`make_certificates` writes self-signed pairs for tests and demos.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from schemas.quantities import Flag

from .generate import CHANNELS, StackModel, simulate_stack, simulator_stack_model

__all__ = ["CLIENT_URI", "NAMESPACE", "SERVER_URI", "STATUS_BITS", "CertificatePaths", "OpcUaSimulator",
           "ServerSecurity", "make_certificate", "make_certificates", "node_id", "node_points", "status_node_id",
           "trust_list_validator"]

log = logging.getLogger(__name__)

NAMESPACE = "urn:cems:simulator"
SERVER_URI = "urn:cems:simulator:server"
CLIENT_URI = "urn:cems:edge-agent"
#: Status word bit -> HJ 212 flag, as a gateway file's ``status.bits`` writes it.
STATUS_BITS = {0: "C", 1: "M", 2: "D"}
_STATUS_BIT = {Flag.C: 0, Flag.M: 1, Flag.D: 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def node_id(stack: int, channel: str, ns_index: int | None = None) -> str:
    """String node id of one variable; ``ns_index=None`` names the namespace by URI (``nsu=``)."""
    ns = f"nsu={NAMESPACE}" if ns_index is None else f"ns={ns_index}"
    return f"{ns};s=stack{stack}.{channel}"


def status_node_id(stack: int, ns_index: int | None = None) -> str:
    return node_id(stack, "status", ns_index)


def node_points(n_stacks: int, ns_index: int | None = None) -> list[dict]:
    """Point definitions (as in a gateway file) for stack 0..n-1: ``{"stack": k, "channel": ..., "node_id": ...}``.

    The status word of stack ``k`` is ``status_node_id(k)`` with bits :data:`STATUS_BITS`.
    """
    return [{"stack": k, "channel": ch, "node_id": node_id(k, ch, ns_index)}
            for k in range(n_stacks) for ch in CHANNELS]


@dataclass(frozen=True)
class ServerSecurity:
    """Server side of the secure channel: certificate and key (PEM or DER by file suffix, as asyncua loads
    them), the endpoints offered (``ua.SecurityPolicyType`` names) and, optionally, the only client
    certificates accepted."""

    certificate: Path
    private_key: Path
    policies: tuple[str, ...] = ("Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign")
    trusted_clients: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class CertificatePaths:
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path


async def make_certificate(directory: Path, name: str, app_uri: str, *, server: bool = False) -> tuple[Path, Path]:
    """A self-signed application instance certificate (DER, ``{name}_cert.der``) and its RSA key (PEM,
    ``{name}_key.pem``), valid one year, for ``app_uri`` and this host's name. Existing valid files are kept."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}_cert.der", directory / f"{name}_key.pem"
    uses = [EKU.SERVER_AUTH, EKU.CLIENT_AUTH] if server else [EKU.CLIENT_AUTH]
    await setup_self_signed_certificate(key, cert, app_uri, socket.gethostname(), uses,
                                        {"countryName": "CN", "organizationName": "cems-pipeline", "commonName": name})
    return cert, key


async def make_certificates(directory: Path) -> CertificatePaths:
    """Server and client pairs for the simulator (``urn:cems:simulator:server``) and the edge agent
    (``urn:cems:edge-agent``). RSA key generation takes a fraction of a second each: create them once."""
    server_cert, server_key = await make_certificate(directory, "server", SERVER_URI, server=True)
    client_cert, client_key = await make_certificate(directory, "client", CLIENT_URI)
    return CertificatePaths(server_cert, server_key, client_cert, client_key)


def _fingerprint(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def _load_der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = Path(path).read_bytes()
    cert = x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----BEGIN") \
        else x509.load_der_x509_certificate(data)
    return cert.public_bytes(Encoding.DER)


def trust_list_validator(trusted: tuple[Path, ...]):
    """A certificate validator (``Server.set_certificate_validator``) accepting exactly these client certificates.

    asyncua's ``CertificateValidator`` checks the validity period and that the application URI the
    client announces is in its certificate; the trust decision is then a SHA-256 pin of the DER encoding.
    asyncua's ``TrustStore`` (directories of certificates, checked by ``cryptography``'s path verifier)
    works with asyncua's own self-signed certificates, which carry basicConstraints ca=true, but its CA
    policy demands ca=true of what it trusts (``asyncua/crypto/truststore.py``) and many vendors'
    self-signed application certificates say ca=false; a pin works for any certificate.
    """
    from asyncua import ua
    from asyncua.common.utils import ServiceError
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
    from cryptography.hazmat.primitives.serialization import Encoding

    allowed = {_fingerprint(_load_der(p)) for p in trusted}
    basic = CertificateValidator(CertificateValidatorOptions.BASIC_VALIDATION | CertificateValidatorOptions.PEER_CLIENT)

    async def validate(cert, app_description) -> None:
        await basic.validate(cert, app_description)
        if _fingerprint(cert.public_bytes(Encoding.DER)) not in allowed:
            log.warning("rejected untrusted client certificate %s (application %s)", cert.subject.rfc4514_string(),
                        getattr(app_description, "ApplicationUri", "?"))
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


class OpcUaSimulator:
    """Serve ``n_stacks`` simulated stacks from precomputed 1 Hz series (deterministic from ``seed``)."""

    def __init__(self, n_stacks: int, seconds: int, *, start_ns: int, seed: int = 0, model: StackModel | None = None,
                 models: list[StackModel] | None = None):
        """``model`` for every stack, or ``models`` one per stack; default :func:`simulator_stack_model` (the
        Modbus simulator's choice, so both serve the same plant for the same seed)."""
        self.n_stacks, self.seconds, self.start_ns = n_stacks, seconds, start_ns
        self.channels = list(CHANNELS)
        shape = (seconds, n_stacks, len(self.channels))
        self.values, self.flags = np.zeros(shape), np.zeros(shape, dtype=np.uint8)
        self.status = np.zeros((seconds, n_stacks), dtype=np.uint16)
        for k in range(n_stacks):  # per stack: whole series at once
            stack_model = models[k] if models else model or simulator_stack_model(k)
            readings, _ = simulate_stack(stack_model, start_ns, seconds, seed=seed + k)
            for j, ch in enumerate(self.channels):
                value, flag = readings[ch]
                self.values[:, k, j], self.flags[:, k, j] = value, flag
                for f, bit in _STATUS_BIT.items():
                    self.status[:, k] |= ((flag == f) << bit).astype(np.uint16)
        self.server = None
        self.ns_index: int | None = None
        self.row = -1  # last row published
        self.ready = threading.Event()  # set once the server listens (usable from another thread)

    def row_ts_ns(self, t) -> np.ndarray | int:
        """Source timestamp (ns) of row ``t``."""
        return self.start_ns + np.asarray(t, dtype=np.int64) * 1_000_000_000

    async def serve(self, port: int, host: str = "127.0.0.1", *, security: ServerSecurity | None = None,
                    speed: float = 1.0) -> None:
        """Serve until cancelled, publishing one row every ``1 / speed`` seconds (the last row stays)."""
        from asyncua import Server, ua

        server = self.server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{host}:{port}/")
        server.set_server_name("CEMS simulator")
        await server.set_application_uri(SERVER_URI)
        if security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            server.set_security_policy([getattr(ua.SecurityPolicyType, p) for p in security.policies])
            await server.load_certificate(str(security.certificate))
            await server.load_private_key(str(security.private_key))
            if security.trusted_clients is not None:
                server.set_certificate_validator(trust_list_validator(security.trusted_clients))
        idx = self.ns_index = await server.register_namespace(NAMESPACE)
        nodes = []  # row-major: per stack, the status word first, then the channels
        for k in range(self.n_stacks):
            obj = await server.nodes.objects.add_object(ua.NodeId(f"stack{k}", idx), f"stack{k}")
            word = ua.Variant(0, ua.VariantType.UInt16)
            nodes.append((await obj.add_variable(ua.NodeId(f"stack{k}.status", idx), "status", word)).nodeid)
            for ch in self.channels:
                zero = ua.Variant(0.0, ua.VariantType.Double)
                var = await obj.add_variable(ua.NodeId(f"stack{k}.{ch}", idx), ch, zero)
                nodes.append(var.nodeid)
        await self._publish(0, nodes)
        await server.start()
        self.ready.set()
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for t in range(1, self.seconds):
                await asyncio.sleep(max(0.0, t0 + t / speed - loop.time()))
                await self._publish(t, nodes)
            await asyncio.Event().wait()
        finally:
            self.ready.clear()
            await server.stop()

    async def _publish(self, t: int, nodes: list) -> None:
        """Write row ``t``: status word first, so a subscriber never sees a value before its status."""
        from asyncua import ua

        source = _EPOCH + timedelta(microseconds=int(self.row_ts_ns(t)) // 1000)
        now = datetime.now(UTC)
        bad = ua.StatusCode(ua.StatusCodes.BadCommunicationError)
        write = self.server.write_attribute_value
        values, flags = self.values[t].tolist(), self.flags[t].tolist()
        i = 0
        for k in range(self.n_stacks):
            await write(nodes[i], ua.DataValue(ua.Variant(int(self.status[t, k]), ua.VariantType.UInt16),
                                               SourceTimestamp=source, ServerTimestamp=now))
            i += 1
            for v, f in zip(values[k], flags[k], strict=True):
                if f == Flag.B:
                    dv = ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=bad,
                                      SourceTimestamp=source, ServerTimestamp=now)
                else:
                    dv = ua.DataValue(ua.Variant(v, ua.VariantType.Double), SourceTimestamp=source, ServerTimestamp=now)
                await write(nodes[i], dv)
                i += 1
        self.row = t
