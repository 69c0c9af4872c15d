"""The gateway as a datalogger: HJ 212 uploads to an environmental platform, retransmitted until acknowledged.

What is sent comes from :class:`~.feed.UplinkFeed` (the agent's own readings through the kernels: minutes, hours,
days; real-time values). Minute, hour and day uploads (2051, 2061, 2031) go through a durable queue first (the
agent's :class:`~edge_agent.outbox.Outbox`, one fsync'd file per upload): an upload leaves the queue only when the
platform's data answer (9014, same QN) came back for each of its packets. Each packet is re-sent after ``OverTime``
seconds without an answer, up to ``ReCount`` times (HJ 212-2017 §6.7; Table 1 defaults: 10 s and 3 over 4G/GPRS,
HJ212-T1; the platform sets them with 1000); then the link is judged down, closed, and re-opened with backoff
(1 s doubling to 60 s), and sending resumes with the same upload and the same QN: an outage loses nothing, and the
platform can tell a retransmission by its QN. Real-time data (2011) are sent when due and not queued (stale values
are no use to a platform after an outage). Commands from the platform are answered by :mod:`.commands`; what they
set (intervals, timeout, retries, a new password) persists in ``<queue_dir>/site-state.json`` (mode 0600).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

from schemas._optional import needs_extra

with needs_extra("edge", "the HJ 212 gateway's metrics"):
    from prometheus_client import CollectorRegistry, Counter, Gauge

import contextlib

from schemas.hj212 import (
    DataRecord,
    FrameSplitter,
    Hj212Error,
    Version,
    build_data_upload,
    build_heartbeat,
    format_qn,
    parse_frame,
)
from schemas.quantities import Flag
from schemas.site import Entity

from ..backoff import Backoff
from ..outbox import Outbox, OutboxFull
from .commands import SiteState, answer
from .config import Hj212Uplink
from .feed import Due, UplinkFeed

__all__ = ["Hj212UplinkClient"]

log = logging.getLogger(__name__)

_CN_OF = {"realtime": "2011", "minute": "2051", "hour": "2061", "day": "2031"}
_VALUE_FIELDS = ("rtd", "min", "avg", "max")


class LinkDown(Exception):
    """ReCount re-sends went unanswered, or the connection closed."""


class Hj212UplinkClient:
    def __init__(self, cfg: Hj212Uplink, site: Entity, registry: CollectorRegistry, *, decimals: int = 4,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.cfg, self.tz, self.clock_ns, self.decimals = cfg, site.tz, clock_ns, decimals
        self.version = Version.HJ212_2025 if cfg.version == "2025" else Version.HJ212_2017
        self.queue = Outbox(cfg.queue_dir, cfg.queue_max_bytes)
        self.feed = UplinkFeed(site, [s.source for s in cfg.sources], lateness_s=cfg.lateness_s)
        self.mn_of = {s.source: s.mn for s in cfg.sources}
        self.sends = {_CN_OF[k] for k in cfg.send}
        self.state_path = Path(cfg.queue_dir) / "site-state.json"
        self.states = self._load_states({s.mn: s.password() for s in cfg.sources})
        self._acks: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._last_qn_ms = 0
        self.connected = False
        self._writer: asyncio.StreamWriter | None = None
        self._acked_since_connect = 0
        r = registry
        self.m_sent = Counter("cems_edge_hj212_uplink_sent_total", "Frames sent to the platform (re-sends "
                                                                  "included), by command.", ["cn"], registry=r)
        self.m_acked = Counter("cems_edge_hj212_uplink_acknowledged_total", "Uploads the platform acknowledged.",
                               ["cn"], registry=r)
        self.m_resent = Counter("cems_edge_hj212_uplink_resent_total", "Packets re-sent after OverTime.", registry=r)
        self.m_queue = Gauge("cems_edge_hj212_uplink_queue", "Uploads waiting for the platform's answer.", registry=r)
        self.m_up = Gauge("cems_edge_hj212_uplink_connected", "1 while connected to the platform.", registry=r)
        self.m_commands = Counter("cems_edge_hj212_uplink_commands_total", "Commands from the platform, by CN.",
                                  ["cn"], registry=r)

    # -- state ------------------------------------------------------------------------------------------------------

    def _load_states(self, passwords: dict[str, str]) -> dict[str, SiteState]:
        c = self.cfg
        states = {mn: SiteState(pw, c.overtime_s, c.recount, c.rtd_interval_s) for mn, pw in passwords.items()}
        try:
            saved = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return states
        except (OSError, ValueError) as exc:
            log.warning("hj212 uplink: %s unreadable (%s); configured settings used", self.state_path, exc)
            return states
        for mn, d in saved.items():
            if mn in states:
                states[mn] = SiteState(**d)
        return states

    def _save_states(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
        with os.fdopen(fd, "w") as f:
            json.dump({mn: asdict(s) for mn, s in self.states.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # -- input ------------------------------------------------------------------------------------------------------

    def add(self, source_id: str, channel_ids, period_s: int, ts_ns, channel, value, flag) -> None:
        """A batch the agent stored (called in the event loop)."""
        if source_id in self.mn_of:
            self.feed.add(source_id, channel_ids, period_s, ts_ns, channel, value, flag)

    def _qn(self, now_ns: int) -> str:
        """A QN never used before by this process: milliseconds, moved on by one where two fall together."""
        ms = max(now_ns // 1_000_000, self._last_qn_ms + 1)
        self._last_qn_ms = ms
        return format_qn(datetime.fromtimestamp(ms / 1000, UTC), self.tz)

    def _records(self, due: Due) -> list[dict]:
        out = []
        for r in due.records:
            d = {"code": r.code, "flag": r.flag.name if r.flag is not None else None}
            for f in _VALUE_FIELDS:
                v = getattr(r, f)
                if v is not None:
                    d[f] = round(v, self.decimals)
            out.append(d)
        return out

    def enqueue_due(self, now_ns: int | None = None) -> int:
        """Put every minute, hour and day that became due into the durable queue; return how many."""
        now_ns = self.clock_ns() if now_ns is None else now_ns
        n = 0
        for due in self.feed.due(now_ns):
            if due.cn not in self.sends:
                continue
            entry = {"cn": due.cn, "source": due.source_id, "qn": self._qn(now_ns),
                     "data_time": due.data_time.isoformat(), "records": self._records(due)}
            payload = json.dumps(entry).encode()
            try:
                self.queue.put(lambda seq, payload=payload: payload)
            except OutboxFull as exc:
                log.error("hj212 uplink: queue full (%s); %s of %s at %s dropped from the uplink (it still reaches "
                          "Kafka)", exc, due.cn, due.source_id, due.data_time, extra={"event": "uplink_queue_full"})
                continue
            n += 1
        if n:
            self._wake.set()
        self.m_queue.set(self.queue.count)
        return n

    def _packets(self, entry: dict) -> list[bytes]:
        source = entry["source"]
        mn = self.mn_of[source]
        records = [DataRecord(d["code"], flag=Flag[d["flag"]] if d.get("flag") else None,
                              **{f: d[f] for f in _VALUE_FIELDS if f in d}) for d in entry["records"]]
        return build_data_upload(entry["cn"], records, data_time=datetime.fromisoformat(entry["data_time"]),
                                 st=self.cfg.st, pw=self.states[mn].password, mn=mn, qn=entry["qn"],
                                 version=self.version, ack=True, tz=self.tz)

    # -- the connection ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: keep a connection to the platform, drain the queue, send real-time data, answer."""
        tasks = [asyncio.create_task(self._producer()), asyncio.create_task(self._realtime())]
        if self.cfg.heartbeat_s:
            tasks.append(asyncio.create_task(self._heartbeat()))
        retry = Backoff()
        try:
            while True:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.cfg.host, self.cfg.port),
                                                            self.cfg.overtime_s)
                except (OSError, TimeoutError) as exc:
                    delay = retry.next()
                    log.warning("hj212 uplink: platform %s:%d unreachable (%s); retry in %g s", self.cfg.host,
                                self.cfg.port, exc, delay, extra={"event": "uplink_unreachable"})
                    await asyncio.sleep(delay)
                    continue
                log.info("hj212 uplink: connected to %s:%d; %d upload(s) queued", self.cfg.host, self.cfg.port,
                         self.queue.count, extra={"event": "uplink_connected"})
                self._set_connected(True, writer)
                reading = asyncio.create_task(self._read(reader, writer))
                down = None
                try:
                    await self._drain(writer, reading)
                except LinkDown as exc:
                    down = exc
                finally:
                    self._set_connected(False, None)
                    reading.cancel()
                    await asyncio.gather(reading, return_exceptions=True)
                    writer.close()
                if self._acked_since_connect:  # the link worked: start the backoff again from 1 s
                    retry.reset()
                delay = retry.next()
                if down is not None:
                    log.warning("hj212 uplink: link down (%s); reconnecting in %g s", down, delay,
                                extra={"event": "uplink_down"})
                await asyncio.sleep(delay)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _set_connected(self, up: bool, writer) -> None:
        self.connected, self._writer = up, writer
        self._acked_since_connect = 0
        self.m_up.set(1 if up else 0)
        for f in self._acks.values():
            if not f.done():
                f.cancel()
        self._acks.clear()

    async def _drain(self, writer: asyncio.StreamWriter, reading: asyncio.Task) -> None:
        """Send queued uploads oldest first, each packet until answered; raises :class:`LinkDown` at the end."""
        while True:
            if reading.done():
                raise LinkDown("the platform closed the connection")
            pending = self.queue.pending(1)
            if not pending:
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waiter, reading}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            seq = pending[0]
            try:
                entry = json.loads(self.queue.read(seq))
                packets = self._packets(entry)
            except (OSError, ValueError, KeyError, Hj212Error) as exc:  # a corrupt entry: keep it, never send it
                aside = self.queue.dir / f"{seq:020d}.corrupt"
                log.error("hj212 uplink: queued upload %d unreadable (%s); moved to %s, not sent", seq, exc, aside,
                          extra={"event": "uplink_corrupt"})
                with contextlib.suppress(OSError):
                    aside.write_bytes(self.queue.read(seq))
                self.queue.ack(seq)
                continue
            for raw in packets:
                await self._send_until_answered(writer, raw, entry["qn"], entry["cn"], reading)
            self.queue.ack(seq)
            self.m_acked.labels(entry["cn"]).inc()
            self.m_queue.set(self.queue.count)
            self._acked_since_connect += 1

    async def _send_until_answered(self, writer, raw: bytes, qn: str, cn: str, reading: asyncio.Task) -> None:
        for attempt in range(self.states_any().recount + 1):
            fut = asyncio.get_running_loop().create_future()
            self._acks[qn] = fut
            writer.write(raw)
            await writer.drain()
            self.m_sent.labels(cn).inc()
            if attempt:
                self.m_resent.inc()
            await asyncio.wait({fut, reading}, timeout=self.states_any().overtime_s,
                               return_when=asyncio.FIRST_COMPLETED)
            if fut.done() and not fut.cancelled():
                return
            if reading.done():
                raise LinkDown("the platform closed the connection")
        raise LinkDown(f"no answer to QN {qn} after {self.states_any().recount} re-send(s)")

    def states_any(self) -> SiteState:
        """OverTime and ReCount are the link's: the first MN's settings (a platform sets them per MN)."""
        return next(iter(self.states.values()))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = FrameSplitter()
        first_mn = next(iter(self.states))
        while True:
            data = await reader.read(65_536)
            if not data:
                return
            for raw in splitter.feed(data):
                try:
                    frame = parse_frame(raw, tz=self.tz)
                except Hj212Error as exc:
                    log.warning("hj212 uplink: frame from the platform refused (%s)", exc,
                                extra={"event": "uplink_refused", "reason": exc.reason})
                    continue
                if frame.cn == "9014" and frame.qn is not None:
                    fut = self._acks.pop(frame.qn, None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    continue
                if frame.cn in ("9011", "9012", "9013"):
                    continue
                self.m_commands.labels(frame.cn).inc()
                mn = frame.mn if frame.mn in self.states else first_mn
                replies, state = answer(frame, self.states[mn], mn=mn, version=self.version,
                                        now=lambda: datetime.fromtimestamp(self.clock_ns() / 1e9, UTC),
                                        tz=self.tz)
                for r in replies:
                    writer.write(r)
                await writer.drain()
                if state != self.states[mn]:
                    self.states[mn] = state
                    self._save_states()
                    log.info("hj212 uplink: platform command %s changed the settings of MN %s", frame.cn, mn,
                             extra={"event": "uplink_setting"})

    async def _producer(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.enqueue_due()

    async def _realtime(self) -> None:
        while True:
            interval = self.states_any().rtd_interval_s
            await asyncio.sleep(interval)
            if "2011" not in self.sends or not self.connected:
                continue
            now = self.clock_ns()
            for due in self.feed.realtime(now, interval):
                mn = self.mn_of[due.source_id]
                if not self.states[mn].realtime:
                    continue
                entry = {"cn": "2011", "source": due.source_id, "qn": self._qn(now),
                         "data_time": due.data_time.isoformat(), "records": self._records(due)}
                for raw in self._packets(entry):
                    if self._writer is not None:
                        self._writer.write(raw)  # not queued; the answer, if any, is not waited for
                        self.m_sent.labels("2011").inc()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            if self.connected and self._writer is not None:
                for mn, st in self.states.items():
                    self._writer.write(build_heartbeat(st=self.cfg.st, pw=st.password, mn=mn,
                                                       qn=self._qn(self.clock_ns()), version=Version.HJ212_2025))

    def replace_state(self, mn: str, **changes) -> None:  # for tests and tools
        self.states[mn] = replace(self.states[mn], **changes)
        self._save_states()
