"""OPC UA driver: subscribe to (or poll) a server's variables and turn every DataValue into a flagged reading.

Why a subscription by default: the server pushes every new sample with the time it was taken
(SourceTimestamp), so a reading carries the analyser's time rather than the gateway's, and nothing
sampled between two cycles is lost. Monitored items ask for the ``StatusValueTimestamp`` trigger, so a
value that repeats but was sampled again (a stuck analyser, a steady temperature) still notifies: a
stuck value must show up as readings, not as a gap. A server that rejects that filter gets the default
trigger; an item the server refuses, or a subscription that cannot be created, is read by one Read
request per cycle instead (logged at WARNING).

Values, flags and timestamps come from each DataValue by the rules of :mod:`.mapping` (status codes -> HJ 212
flags); certificates, the security policy and server pinning are :mod:`.security`'s.

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
from typing import Any

import numpy as np

from schemas._optional import needs_extra
from schemas.quantities import Flag

from ..driver import CycleReadings, Driver
from .config import OpcUaDevice
from .mapping import as_number, flag_values, reading_time_ns, status_code, status_word, timestamp_ns, variant_value
from .security import secure_client

with needs_extra("opcua", "an OPC UA device"):
    from asyncua import Client, ua
    from asyncua.client.ua_client import UaClientState
    from asyncua.common.subscription import Subscription

__all__ = ["OpcUaDriver", "probe_node"]

log = logging.getLogger(__name__)

_NO_TS = np.iinfo(np.int64).min
_SC = ua.StatusCodes
_FILTER_REJECTED = {_SC.BadMonitoredItemFilterUnsupported, _SC.BadFilterNotAllowed, _SC.BadMonitoredItemFilterInvalid}


async def _open_client(device: OpcUaDevice) -> Client:
    """Connect a client (secure channel, session, identity) for ``device``; raises on failure."""
    client = Client(device.endpoint, timeout=device.timeout_s)
    client.name = client.description = f"cems edge agent ({device.id})"
    # Asked for, then revised by the server; short, because a reconnect opens a new session anyway.
    client.session_timeout = round(max(60_000.0, 30_000.0 * device.poll_interval_s))  # ms
    await secure_client(client, device)
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
                n = ua.NodeId(n.Identifier, ua.Int16(namespaces.index(uri)), n.NodeIdType)
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
        self._sub: Subscription | None = None
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
                except TimeoutError:
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
        assert self._client is not None  # _connect opened it
        sub = self._sub = await self._client.create_subscription(params, _Handler(self))
        # Server-side queue per item: the samples of one publishing interval, with room for publishes that come
        # late (a busy server or client); an overflow silently discards the oldest samples.
        queue = max(10, 5 * math.ceil(d.poll_interval_s / d.sampling_interval))
        handles = list(range(len(self._texts)))
        results = await sub.create_monitored_items([self._item(h, queue, True) for h in handles])
        retry = [h for h, r in zip(handles, results, strict=True)
                 if isinstance(r, ua.StatusCode) and r.value & 0xFFFF0000 in _FILTER_REJECTED]
        if retry:
            log.info("device %s: server rejects the StatusValueTimestamp trigger for %d item(s); a repeated value "
                     "will not notify (stale after %.1f s)", d.id, len(retry), d.stale_after)
            again = await sub.create_monitored_items([self._item(h, queue, False) for h in retry])
            results = list(results)
            for h, r in zip(retry, again, strict=True):
                results[h] = r
        refused = {h: r.name for h, r in zip(handles, results, strict=True) if isinstance(r, ua.StatusCode)}
        failed = list(refused)
        if failed:
            log.warning("device %s: server refused to monitor %s; reading them every cycle instead", d.id,
                        ", ".join(f"{self._texts[h]} ({name})" for h, name in refused.items()))
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
        status_config = self.device.status
        for h, dv, t, polled in zip(idx, dvs, recv, was_read, strict=True):  # pull fields out of asyncua objects
            v, c = variant_value(dv), status_code(dv)
            ts = reading_time_ns(dv)
            raw_out[self._texts[h]] = (v, ua.StatusCode(ua.UInt32(c)).name, timestamp_ns(dv.SourceTimestamp))
            if h == sh and status_config is not None:
                word = status_word(v, c)
                if word is not None:
                    self._status_word = word
                st_ts.append(_NO_TS + 1 if polled or ts is None else ts)  # a polled word flags the whole cycle
                st_flag.append(np.uint8(status_config.flag_of(word) if word is not None else Flag.N))
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
            raws.append(as_number(v))
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
    out: dict[str, Any] = {"node_id": node_id, "value": None, "status": None, "source_ts_ns": None,
                           "server_ts_ns": None, "data_type": None, "variant_type": None, "error": None}
    client = None
    try:
        async def read() -> None:
            nonlocal client
            client = await _open_client(device)
            (node,) = await _resolve(client, [node_id])
            params = _read_parameters([node])
            params.NodesToRead.append(ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.DataType))
            value, dtype = await client.uaclient.read(params)
            out.update(value=variant_value(value), status=ua.StatusCode(ua.UInt32(status_code(value))).name,
                       source_ts_ns=timestamp_ns(value.SourceTimestamp),
                       server_ts_ns=timestamp_ns(value.ServerTimestamp),
                       variant_type=value.Value.VariantType.name if value.Value is not None else None)
            dt = variant_value(dtype)
            if isinstance(dt, ua.NodeId):
                ident = dt.Identifier
                if dt.NamespaceIndex == 0 and isinstance(ident, int):  # a standard type: its name
                    out["data_type"] = ua.ObjectIdNames.get(ident, dt.to_string())
                else:
                    out["data_type"] = dt.to_string()

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
