"""OPC UA driver: subscribe to (or poll) a server's variables and turn every DataValue into a flagged reading.

Why a subscription by default: the server pushes every new sample with the time it was taken
(SourceTimestamp), so a reading carries the analyser's time rather than the gateway's, and nothing
sampled between two cycles is lost. Monitored items ask for the ``StatusValueTimestamp`` trigger, so a
value that repeats but was sampled again (a stuck analyser, a steady temperature) still notifies: a
stuck value must show up as readings, not as a gap. A server that rejects that filter gets the default
trigger; an item the server refuses, or a subscription that cannot be created, is read by one Read
request per cycle instead (logged at WARNING).

Flags (HJ 212-2017 Table 8) from the OPC UA StatusCode of each value (Part 4 §7.39, Part 8 §A.4):

* Good -> N, then NaN/inf (or a value that is not a number) -> D, outside the point's low/high -> T;
* Bad communication codes (BadCommunicationError, BadNoCommunication, BadNotConnected, BadTimeout,
  BadServerNotConnected, BadWaitingForInitialData, ...) -> B: the server cannot reach the instrument;
* BadOutOfRange and UncertainEngineeringUnitsExceeded -> T;
* any other Bad -> D; any other Uncertain -> D. Uncertain means the server itself doubts the value
  (last usable value, sensor not accurate, substituted...): HJ 75 only averages N readings, so doubtful
  data is kept, with its value, but not treated as valid.

Timestamps: SourceTimestamp, else ServerTimestamp, else the cycle time. A subscribed point with no new
sample for ``stale_after_s`` reads B once per cycle at the cycle time, so a silent server or a dead
subscription leaves a recorded gap. A repeated sample (same source timestamp, e.g. the current value
re-sent after a reconnect) is dropped by a subscription; a Read that returns the same sample as the last
cycle is stamped with the cycle time instead (sample and hold, as a Modbus register behaves), so a
polled point yields one reading per cycle and no (point, time) pair twice.

The status word applies its flag to N readings: a subscribed status word from its source timestamp on
(the simulator writes it before the values of the same second), a polled one to the whole cycle. A
status word that cannot be read applies nothing (as in the Modbus poller).

Connection loss (socket closed, keep-alive probe failing, subscription reported dead, a Read failing)
makes ``poll`` return what arrived plus B for every other point and sets ``connected`` False; the agent
then calls ``connect`` again, which builds a fresh client, session and subscription. Notifications
queued but not yet returned survive the reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from schemas.quantities import Flag

from ..driver import CycleReadings, Driver
from .config import OpcUaDevice, OpcUaSecurity

try:
    from asyncua import Client, ua
    from asyncua.client.ua_client import UaClientState
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from asyncua.crypto.uacrypto import CertProperties
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("edge_agent.opcua.driver needs the 'edge' extra: pip install 'cems-pipeline[edge]'") from exc

__all__ = ["OpcUaDriver", "flag_values", "probe_node"]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_NO_TS = np.iinfo(np.int64).min
_SC = ua.StatusCodes
#: Bad codes meaning "the server cannot reach the instrument" (upper 16 bits; the lower 16 are info bits).
COMM_CODES = np.array([_SC.BadCommunicationError, _SC.BadNoCommunication, _SC.BadNotConnected, _SC.BadTimeout,
                       _SC.BadServerNotConnected, _SC.BadWaitingForInitialData, _SC.BadConnectionClosed,
                       _SC.BadShutdown, _SC.BadServerHalted], dtype=np.uint32)
RANGE_CODES = np.array([_SC.BadOutOfRange, _SC.UncertainEngineeringUnitsExceeded], dtype=np.uint32)
_FILTER_REJECTED = {_SC.BadMonitoredItemFilterUnsupported, _SC.BadFilterNotAllowed, _SC.BadMonitoredItemFilterInvalid}


def flag_values(raw: np.ndarray, code: np.ndarray, scale: np.ndarray, offset: np.ndarray, low: np.ndarray,
                high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values and HJ 212 flags of many DataValues at once (see the module docstring for the rules).

    ``raw`` is the variant as float (NaN when missing or not a number), ``code`` the uint32 StatusCode;
    the other arrays are the points' constants aligned with them. Bad values come back as NaN.
    """
    code = np.asarray(code, dtype=np.uint32)
    severity = code >> np.uint32(30)  # 0 good, 1 uncertain, 2 and 3 bad
    kind = code & np.uint32(0xFFFF0000)
    with np.errstate(invalid="ignore", over="ignore"):
        value = raw * scale + offset
        finite = np.isfinite(value)
        outside = (value < low) | (value > high)
    flag = np.where(~finite, Flag.D, np.where(outside, Flag.T, Flag.N)).astype(np.uint8)
    flag[severity != 0] = Flag.D
    flag[(severity >= 2) & np.isin(kind, COMM_CODES)] = Flag.B
    flag[(severity != 0) & np.isin(kind, RANGE_CODES)] = Flag.T
    value = np.where(finite & (severity < 2), value, np.nan)
    return value, flag


def _ns(dt: datetime | None) -> int | None:
    """A DataValue timestamp as ns since the Unix epoch; None when absent (or the OPC UA 'null' 1601 date)."""
    if dt is None or dt.year <= 1601:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US * 1000


def _as_float(v) -> float:
    if isinstance(v, bool | int | float | np.number):
        return float(v)
    return math.nan


def _variant(dv: ua.DataValue):
    return dv.Value.Value if dv.Value is not None else None


def _code(dv: ua.DataValue) -> int:
    return dv.StatusCode.value if dv.StatusCode is not None else 0


def _cert(path: Path, password=None) -> CertProperties:
    """asyncua tells PEM from DER by the file suffix; sniff the content instead so either works."""
    head = Path(path).read_bytes()[:64].lstrip()
    return CertProperties(str(path), extension="pem" if head.startswith(b"-----BEGIN") else "der", password=password)


def _application_uri(cert_path: Path) -> str | None:
    """The URI in a certificate's subjectAltName: OPC UA servers reject a client whose announced
    application URI is not in its certificate."""
    from cryptography import x509

    data = Path(cert_path).read_bytes()
    cert = x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----BEGIN") \
        else x509.load_der_x509_certificate(data)
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        return None
    return uris[0] if uris else None


def _der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


async def _check_pin(client: Client, pinned: Path, mode) -> None:
    """Compare the certificate the server's endpoint presents with the pinned one before opening a secure
    channel: with the wrong key the server cannot decrypt OpenSecureChannel and just never answers, so
    without this check a wrong pin would only show as a timeout."""
    import hashlib

    endpoint = Client.find_endpoint(await client.connect_and_get_server_endpoints(), mode,
                                    SecurityPolicyBasic256Sha256.URI)
    presented = endpoint.ServerCertificate or b""
    presented = presented[: int.from_bytes(presented[2:4], "big") + 4]  # first certificate of a chain
    expected = _der(pinned)
    if presented != expected:
        raise ConnectionError(f"server certificate sha256:{hashlib.sha256(presented).hexdigest()[:16]} is not the "
                              f"pinned {pinned} (sha256:{hashlib.sha256(expected).hexdigest()[:16]})")


async def _open_client(device: OpcUaDevice) -> Client:
    """Connect a client (secure channel, session, identity) for ``device``; raises on failure."""
    client = Client(device.endpoint, timeout=device.timeout_s)
    client.name = client.description = f"cems edge agent ({device.id})"
    # Asked for, then revised by the server; short, because a reconnect opens a new session anyway.
    client.session_timeout = max(60_000.0, 30_000.0 * device.poll_interval_s)
    sec: OpcUaSecurity = device.security
    if sec.secured:
        client.application_uri = sec.application_uri or _application_uri(sec.certificate) or "urn:cems:edge-agent"
        password = sec.private_key_password.get_secret_value() if sec.private_key_password else None
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        if sec.server_certificate is not None:
            await _check_pin(client, sec.server_certificate, mode)
        await client.set_security(
            SecurityPolicyBasic256Sha256, _cert(sec.certificate), _cert(sec.private_key, password),
            server_certificate=_cert(sec.server_certificate) if sec.server_certificate else None, mode=mode)
    elif sec.application_uri:
        client.application_uri = sec.application_uri
    if sec.username is not None:
        if not sec.secured:
            log.warning("device %s: user %s logs in over an unsecured channel", device.id, sec.username)
        client.set_user(sec.username)
        client.set_password(sec.password.get_secret_value())
    await client.connect()
    return client


async def _resolve(client: Client, texts: list[str]) -> list[ua.NodeId]:
    """Parse node ids; ``nsu=`` namespace URIs become the server's current namespace index."""
    parsed = [ua.NodeId.from_string(t) for t in texts]
    if any(getattr(n, "NamespaceUri", None) for n in parsed):
        namespaces = await client.get_namespace_array()
        out = []
        for t, n in zip(texts, parsed, strict=True):
            uri = getattr(n, "NamespaceUri", None)
            if uri:
                if uri not in namespaces:
                    raise LookupError(f"namespace {uri!r} of node {t!r} is not on the server (it has {namespaces})")
                n = ua.NodeId(n.Identifier, namespaces.index(uri), n.NodeIdType)
            out.append(n)
        return out
    return parsed


def _read_parameters(nodes: list[ua.NodeId], attribute=ua.AttributeIds.Value) -> ua.ReadParameters:
    params = ua.ReadParameters()
    params.MaxAge = 0  # a data logger wants the device's current value, not a cache
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in nodes]
    return params


class _Handler:
    """Subscription callbacks: only append to the driver's queue (asyncua runs each call in a task)."""

    def __init__(self, driver: OpcUaDriver) -> None:
        self._driver = driver

    def datachange_notification(self, node, val, data) -> None:
        self._driver._notified(data.subscription_data.client_handle, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = status.Status if status.Status is not None else ua.StatusCode()
        if not code.is_good():
            self._driver._subscription_dead(code.name)


class OpcUaDriver(Driver):
    """One OPC UA server connection feeding the points of one :class:`OpcUaDevice`."""

    def __init__(self, device: OpcUaDevice, *, queue_limit: int | None = None) -> None:
        self.device = device
        self.n_points = len(device.points)
        pts = device.points
        self._scale = np.array([p.scale for p in pts], dtype=np.float64)
        self._offset = np.array([p.offset for p in pts], dtype=np.float64)
        self._low = np.array([-np.inf if p.low is None else p.low for p in pts])
        self._high = np.array([np.inf if p.high is None else p.high for p in pts])
        self._texts = [p.node_id for p in pts] + ([device.status.node_id] if device.status else [])
        self._status_handle = self.n_points  # handle == index into _texts
        self._client: Client | None = None
        self._sub = None
        self._nodes: list[ua.NodeId] = []
        self._polled = np.arange(len(self._texts))  # indices read each cycle (all of them in poll mode)
        self._subscribed = np.zeros(self.n_points, dtype=bool)
        self._connected = False
        self._dead: str | None = None  # why the subscription died, set by the handler
        self._last_failure: str | None = None
        limit = queue_limit or max(100_000, 1000 * len(self._texts))
        self._queue: deque[tuple[int, ua.DataValue, float]] = deque(maxlen=limit)
        self._dropped = 0
        self._last_ts = np.full(self.n_points, _NO_TS, dtype=np.int64)  # last sample recorded per point
        self._fresh_at = np.full(self.n_points, -np.inf)  # monotonic time of the last new sample
        self._status_flag = np.uint8(Flag.N)
        self._status_word: int | None = None

    # -- Driver interface ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> bool:
        await self._teardown()
        self._dead = None
        try:
            await asyncio.wait_for(self._connect(), timeout=3 * self.device.timeout_s + 1)
        except Exception as exc:  # unreachable, refused, security rejected, bad namespace...
            await self._teardown()
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if reason != self._last_failure:
                log.warning("device %s: cannot connect to %s: %s", self.device.id, self.device.endpoint, reason)
            else:
                log.debug("device %s: still cannot connect: %s", self.device.id, reason)
            self._last_failure = reason
            return False
        self._last_failure = None
        self._connected = True
        self._fresh_at[:] = time.monotonic()  # every subscribed point gets stale_after_s to send its value
        log.info("device %s: connected to %s (%s, %d subscribed, %d polled)", self.device.id, self.device.endpoint,
                 self.device.mode, int(self._subscribed.sum()), len(self._polled))
        return True

    async def poll(self, now_ns: int) -> CycleReadings:
        await asyncio.sleep(0)  # let asyncua's dispatch tasks deliver what already arrived
        mono = time.monotonic()
        idx, dvs, recv = [], [], []
        while self._queue:
            h, dv, t = self._queue.popleft()
            idx.append(h)
            dvs.append(dv)
            recv.append(t)
        if self._dropped:
            log.warning("device %s: %d notifications dropped (queue full: is poll() being called?)",
                        self.device.id, self._dropped)
            self._dropped = 0
        status_src = [False] * len(dvs)
        requests = comm_errors = 0
        lost, read_failed = None, False
        if not self._connected or self._client is None:
            comm_errors += 1  # a cycle without a connection is a communication failure
        else:
            if len(self._polled):
                requests += 1
                try:
                    read = await self._client.uaclient.read(_read_parameters([self._nodes[i] for i in self._polled]))
                except asyncio.TimeoutError:
                    comm_errors, read_failed = comm_errors + 1, True
                    if self._client.uaclient.state is not UaClientState.CONNECTED:
                        lost = "read timed out and the connection is gone"
                except Exception as exc:  # ConnectionError, OSError, service faults (BadSessionIdInvalid...)
                    comm_errors, read_failed = comm_errors + 1, True
                    lost = f"read failed: {type(exc).__name__}: {exc}"
                else:
                    idx += self._polled.tolist()
                    dvs += read
                    recv += [mono] * len(read)
                    status_src += [True] * len(read)
            if lost is None and self._dead is not None:
                lost = f"subscription reported {self._dead}"
            elif lost is None and self._client.uaclient.state is not UaClientState.CONNECTED:
                lost = "connection lost"
            if lost is not None:
                log.warning("device %s: %s", self.device.id, lost)
                comm_errors = max(comm_errors, 1)
                await self._teardown()  # stop asyncua's publish loop now; queued notifications are kept
        return self._readings(now_ns, mono, idx, dvs, recv, status_src, requests, comm_errors, read_failed)

    async def close(self) -> None:
        await self._teardown()

    # -- connection ---------------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._client = await _open_client(self.device)
        self._nodes = await _resolve(self._client, self._texts)
        self._polled = np.arange(len(self._texts))
        self._subscribed[:] = False
        if self.device.mode == "subscribe":
            try:
                await self._subscribe()
            except Exception as exc:
                log.warning("device %s: subscription failed (%s: %s); polling every cycle instead",
                            self.device.id, type(exc).__name__, exc)
                await self._drop_subscription()
                self._polled = np.arange(len(self._texts))
                self._subscribed[:] = False

    async def _subscribe(self) -> None:
        d = self.device
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = d.poll_interval_s * 1000.0
        params.RequestedMaxKeepAliveCount = 10  # an idle server still answers every 10 cycles
        params.RequestedLifetimeCount = 100  # the server drops the subscription of a client gone 100 cycles
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        self._sub = await self._client.create_subscription(params, _Handler(self))
        # Server-side queue per item: the samples of one publishing interval, with room for publishes that come
        # late (a busy server or client); an overflow silently discards the oldest samples.
        queue = max(10, 5 * math.ceil(d.poll_interval_s / d.sampling_interval))
        handles = list(range(len(self._texts)))
        results = await self._sub.create_monitored_items([self._item(h, queue, True) for h in handles])
        retry = [h for h, r in zip(handles, results, strict=True)
                 if isinstance(r, ua.StatusCode) and r.value & 0xFFFF0000 in _FILTER_REJECTED]
        if retry:
            log.info("device %s: server rejects the StatusValueTimestamp trigger for %d item(s); a repeated value "
                     "will not notify (stale after %.1f s)", d.id, len(retry), d.stale_after)
            again = await self._sub.create_monitored_items([self._item(h, queue, False) for h in retry])
            results = list(results)
            for h, r in zip(retry, again, strict=True):
                results[h] = r
        failed = [h for h, r in zip(handles, results, strict=True) if isinstance(r, ua.StatusCode)]
        if failed:
            log.warning("device %s: server refused to monitor %s; reading them every cycle instead", d.id,
                        ", ".join(f"{self._texts[h]} ({results[h].name})" for h in failed))
        self._polled = np.array(failed, dtype=np.int64)
        self._subscribed[:] = True
        self._subscribed[np.array([h for h in failed if h < self.n_points], dtype=np.int64)] = False

    def _item(self, handle: int, queue: int, timestamp_trigger: bool) -> ua.MonitoredItemCreateRequest:
        mp = ua.MonitoringParameters()
        mp.ClientHandle = handle
        mp.SamplingInterval = self.device.sampling_interval * 1000.0
        mp.QueueSize = queue
        mp.DiscardOldest = True
        if timestamp_trigger:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
            flt.DeadbandType = ua.DeadbandType.None_
            mp.Filter = flt
        mir = ua.MonitoredItemCreateRequest()
        mir.ItemToMonitor = ua.ReadValueId(NodeId=self._nodes[handle], AttributeId=ua.AttributeIds.Value)
        mir.MonitoringMode = ua.MonitoringMode.Reporting
        mir.RequestedParameters = mp
        return mir

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await asyncio.wait_for(sub.delete(), timeout=self.device.timeout_s)
        except Exception:
            log.debug("device %s: deleting the subscription failed", self.device.id, exc_info=True)

    async def _teardown(self) -> None:
        """Forget the client; delete the subscription and close the session if the server is still there."""
        self._connected = False
        client = self._client
        if client is None:
            return
        try:
            if client.uaclient.state is UaClientState.CONNECTED:
                await self._drop_subscription()
            await asyncio.wait_for(client.disconnect(), timeout=self.device.timeout_s)
        except Exception:
            log.debug("device %s: disconnect failed", self.device.id, exc_info=True)
        self._sub = None
        self._client = None

    # -- subscription callbacks (called from asyncua tasks) -----------------------------------------

    def _notified(self, handle: int, dv: ua.DataValue) -> None:
        if handle is None or not 0 <= handle < len(self._texts):
            return
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1
        self._queue.append((handle, dv, time.monotonic()))

    def _subscription_dead(self, reason: str) -> None:
        self._dead = reason

    # -- readings -----------------------------------------------------------------------------------

    def _readings(self, now_ns: int, mono: float, idx: list[int], dvs: list, recv: list[float], was_read: list[bool],
                  requests: int, comm_errors: int, read_failed: bool) -> CycleReadings:
        """Map one cycle's DataValues to readings; add the B readings owed (no connection, stale points)."""
        n, sh = self.n_points, self._status_handle
        pts, tss, raws, codes = [], [], [], []
        st_ts, st_flag = [_NO_TS], [self._status_flag]  # status timeline; entry 0 is what held before
        raw_out: dict[str, tuple] = {}
        for h, dv, t, polled in zip(idx, dvs, recv, was_read, strict=True):  # pull fields out of asyncua objects
            v, c = _variant(dv), _code(dv)
            src = _ns(dv.SourceTimestamp)
            ts = src if src is not None else _ns(dv.ServerTimestamp)
            raw_out[self._texts[h]] = (v, ua.StatusCode(c).name, src)
            if h == sh:
                numeric = isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()
                word = int(v) if (c >> 30) == 0 and numeric and v >= 0 else None
                if word is not None:
                    self._status_word = word
                st_ts.append(_NO_TS + 1 if polled or ts is None else ts)  # a polled word flags the whole cycle
                st_flag.append(np.uint8(self.device.status.flag_of(word) if word is not None else Flag.N))
                continue
            if ts is None:
                ts = now_ns
            elif ts == self._last_ts[h]:
                if not polled:
                    continue  # the same sample again (initial value after a reconnect)
                ts = now_ns  # polled and not updated since the last cycle: sample and hold
            else:
                self._last_ts[h] = ts
                self._fresh_at[h] = t
            pts.append(h)
            tss.append(ts)
            raws.append(_as_float(v))
            codes.append(c)
        point = np.array(pts, dtype=np.uint16)
        ts_ns = np.array(tss, dtype=np.int64)
        code = np.array(codes, dtype=np.uint32)
        value, flag = flag_values(np.array(raws, dtype=np.float64), code, self._scale[point], self._offset[point],
                                  self._low[point], self._high[point])
        device_errors = int(np.count_nonzero(code >> np.uint32(30)))
        if self.device.status is not None and (len(st_ts) > 1 or self._status_flag != Flag.N):
            order = np.argsort(np.array(st_ts, dtype=np.int64), kind="stable")
            tl_ts, tl_flag = np.array(st_ts, dtype=np.int64)[order], np.array(st_flag, dtype=np.uint8)[order]
            at = np.searchsorted(tl_ts, ts_ns, side="right") - 1  # the status word in force at each reading
            flag = np.where(flag == Flag.N, tl_flag[np.maximum(at, 0)], flag).astype(np.uint8)
            self._status_flag = np.uint8(tl_flag[-1])
        # Points owed a B: without a connection, all those without a reading; else those whose Read failed
        # and the subscribed ones gone stale.
        if not self._connected:
            missing = np.ones(n, dtype=bool)
            missing[point] = False
        else:
            missing = self._subscribed & (mono - self._fresh_at > self.device.stale_after)
            if read_failed:
                missing[self._polled[self._polled < n]] = True
        if missing.any():
            b = np.flatnonzero(missing)
            point = np.concatenate([point, b.astype(np.uint16)])
            ts_ns = np.concatenate([ts_ns, np.full(b.size, now_ns, dtype=np.int64)])
            value = np.concatenate([value, np.full(b.size, np.nan)])
            flag = np.concatenate([flag, np.full(b.size, Flag.B, dtype=np.uint8)])
        status = self._status_word if self.device.status is not None and self._connected else None
        return CycleReadings(ts_ns, point, value, flag, requests=requests, comm_errors=comm_errors,
                             device_errors=device_errors, status=status, raw=raw_out)


async def probe_node(device: OpcUaDevice, node_id: str) -> dict:
    """Read one node once over ``device``'s endpoint and security (for ``cems edge probe``); never raises.

    Returns ``node_id``, ``value``, ``status`` (StatusCode name), ``source_ts_ns``, ``server_ts_ns``,
    ``data_type`` (name of the DataType attribute), ``variant_type`` and ``error`` (None on success).
    """
    out = {"node_id": node_id, "value": None, "status": None, "source_ts_ns": None, "server_ts_ns": None,
           "data_type": None, "variant_type": None, "error": None}
    client = None
    try:
        async def read() -> None:
            nonlocal client
            client = await _open_client(device)
            (node,) = await _resolve(client, [node_id])
            params = _read_parameters([node])
            params.NodesToRead.append(ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.DataType))
            value, dtype = await client.uaclient.read(params)
            out.update(value=_variant(value), status=ua.StatusCode(_code(value)).name,
                       source_ts_ns=_ns(value.SourceTimestamp), server_ts_ns=_ns(value.ServerTimestamp),
                       variant_type=value.Value.VariantType.name if value.Value is not None else None)
            dt = _variant(dtype)
            if isinstance(dt, ua.NodeId):
                out["data_type"] = (ua.ObjectIdNames.get(dt.Identifier, dt.to_string()) if dt.NamespaceIndex == 0
                                    else dt.to_string())

        await asyncio.wait_for(read(), timeout=4 * device.timeout_s + 1)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=device.timeout_s)
            except Exception:
                log.debug("probe: disconnect failed", exc_info=True)
    return out
