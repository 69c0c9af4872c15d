"""The gateway as an upper platform: dataloggers (数采仪) connect and push HJ 212 frames, which land in the outbox.

An asyncio TCP server around the protocol core :class:`schemas.hj212.session.ReceiverSession` (checks, answers,
reassembly, retransmission dedup: shared with the centre's receiver). Each whole upload of a registered datalogger
becomes one reading batch (:mod:`schemas.hj212.readings`: its period kept, 2011 as samples, 2051/2061/2031 as means),
stored in the agent's outbox (fsync'd) before its data answer (9014) goes back (docs/sources.md HJ212-ACK-STORED): a
datalogger deletes what was acknowledged, so nothing acknowledged can be lost. When the outbox refuses (full), no
answer is sent and the datalogger keeps the data for later. A datalogger's buffered history after an outage arrives
frame by frame and is stored in that order.

Limits: ``max_connections`` (more are closed at once), ``idle_timeout_s`` (a silent connection is closed), the
frame size (``max_frame_bytes``: the splitter drops what grows past it), split messages per connection (64).
The last frames of each datalogger are kept for ``cems edge probe`` (passwords masked) in
``<outbox>/../hj212-recent-<device>.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas._optional import needs_extra

with needs_extra("edge", "the HJ 212 gateway's metrics"):
    from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.hj212 import SourceMap
from schemas.hj212.readings import Converted
from schemas.hj212.session import Dedup, ReceiverSession, Refused, Registration, Reply, Seen, Upload
from schemas.site import Entity

from ..outbox import OutboxFull
from .config import Hj212Device

__all__ = ["Hj212Receiver", "mask_password", "recent_path"]

log = logging.getLogger(__name__)

_PW = re.compile(rb"PW=[^;]*;")
RECENT_PER_MN = 20


def mask_password(raw: bytes) -> str:
    """A frame as text for logs and probes, its password replaced by asterisks."""
    return _PW.sub(b"PW=******;", raw).decode("utf-8", "replace").rstrip("\r\n")


def recent_path(outbox_dir: Path, device_id: str) -> Path:
    return Path(outbox_dir).parent / f"hj212-recent-{device_id}.json"


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.frames = Counter("cems_edge_hj212_frames_total", "HJ 212 frames received, by command.", ["device", "cn"],
                              registry=r)
        self.refused = Counter("cems_edge_hj212_refused_total", "HJ 212 frames refused, by reason.",
                               ["device", "reason"], registry=r)
        self.stored = Counter("cems_edge_hj212_uploads_stored_total", "Uploads stored in the outbox.", ["device", "cn"],
                              registry=r)
        self.duplicates = Counter("cems_edge_hj212_duplicates_total", "Retransmitted uploads acknowledged again, not "
                                                                       "stored twice.", ["device"], registry=r)
        self.unacked = Counter("cems_edge_hj212_unacknowledged_total", "Uploads left unanswered because the outbox "
                                                                       "refused them.", ["device"], registry=r)
        self.connections = Gauge("cems_edge_hj212_connections", "Open datalogger connections.", ["device"], registry=r)
        self.dropped_bytes = Counter("cems_edge_hj212_garbage_bytes_total", "Bytes outside any frame.", ["device"],
                                     registry=r)


class Hj212Receiver:
    """One ``protocol: hj212`` device: a listening socket for its dataloggers.

    ``store(converted)`` puts one upload's batch into the outbox and returns its sequence number (raising
    :class:`~edge_agent.outbox.OutboxFull` when it cannot); it runs in the event loop, as the agent's batcher does.
    """

    def __init__(self, device: Hj212Device, site: Entity, store: Callable[[Converted], int],
                 registry: CollectorRegistry, recent_file: Path | None = None,
                 observer: Callable[[str | None, str, bytes, str], None] | None = None) -> None:
        self.device, self.store, self.observer = device, store, observer
        by_mn = {s.hj212.mn: s for s in site.sources if s.hj212 is not None}
        self.registrations = {d.mn: Registration(SourceMap.of(by_mn[d.mn]), d.password(), site.tz)
                              for d in device.dataloggers}
        self.dedup = Dedup()
        self.metrics = _Metrics(registry)
        self.recent_file = recent_file
        self.recent: dict[str, deque] = {mn: deque(maxlen=RECENT_PER_MN) for mn in self.registrations}
        self._recent_dirty = False
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1] if self.server else self.device.port

    async def serve(self) -> None:
        """Listen until cancelled; then close every connection."""
        d = self.device
        self.server = await asyncio.start_server(self._connection, d.listen, d.port, limit=d.max_frame_bytes)
        log.info("device %s: HJ 212 receiver on %s for %d datalogger(s)", d.id, d.endpoint, len(self.registrations),
                 extra={"device": d.id, "event": "listening"})
        flusher = asyncio.create_task(self._flush_recent())
        try:
            await self.server.serve_forever()
        finally:
            flusher.cancel()
            self.server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, flusher, return_exceptions=True)
            self._write_recent()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        d = self.device
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        if self.connections >= d.max_connections:
            log.warning("device %s: connection from %s refused: %d open (max_connections)", d.id, peer,
                        self.connections, extra={"device": d.id, "event": "connection_refused"})
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None  # asyncio.start_server runs each connection in a task
        self._tasks.add(task)
        self.connections += 1
        self.metrics.connections.labels(d.id).inc()
        session = ReceiverSession(self.registrations.get, dedup=self.dedup, strict=d.strict,
                                  max_frame_bytes=d.max_frame_bytes)
        garbage = 0
        log.info("device %s: datalogger connected from %s", d.id, peer, extra={"device": d.id, "event": "connected"})
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65_536), d.idle_timeout_s)
                except TimeoutError:
                    log.info("device %s: %s idle for %g s; closed", d.id, peer, d.idle_timeout_s,
                             extra={"device": d.id, "event": "idle_timeout"})
                    break
                if not data:
                    break
                for ev in session.feed(data, time.monotonic()):
                    await self._handle(ev, writer, peer)
                if session.splitter.garbage_bytes != garbage:
                    self.metrics.dropped_bytes.labels(d.id).inc(session.splitter.garbage_bytes - garbage)
                    garbage = session.splitter.garbage_bytes
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("device %s: %s disconnected (%s)", d.id, peer, exc,
                     extra={"device": d.id, "event": "disconnected"})
        finally:
            self.connections -= 1
            self.metrics.connections.labels(d.id).dec()
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, ev, writer: asyncio.StreamWriter, peer: str) -> None:
        d, m = self.device, self.metrics
        if isinstance(ev, Reply):
            writer.write(ev.raw)
            self._remember(ev.frame.mn if ev.frame else None, "out", ev.raw, "answer")
            return
        if isinstance(ev, Refused):
            m.refused.labels(d.id, ev.reason).inc()
            log.warning("device %s: frame from %s refused (%s): %s", d.id, peer, ev.reason, ev.detail,
                        extra={"device": d.id, "event": "refused", "reason": ev.reason})
            self._remember(ev.mn, "in", ev.raw, f"refused: {ev.reason}")
            return
        if isinstance(ev, Seen):
            m.frames.labels(d.id, ev.frame.cn).inc()
            self._remember(ev.frame.mn, "in", ev.frame.raw, "seen")
            return
        assert isinstance(ev, Upload)
        cn = ev.message.frame.cn
        m.frames.labels(d.id, cn).inc(len(ev.message.parts))
        raw = b"".join(p.raw for p in ev.message.parts)
        if ev.duplicate:
            m.duplicates.labels(d.id).inc()
            verdict = "duplicate (acknowledged again)"
        elif len(ev.converted):
            try:
                seq = self.store(ev.converted)
            except OutboxFull as exc:
                m.unacked.labels(d.id).inc()
                log.error("device %s: outbox refused an upload of MN %s (%s); not acknowledged, the datalogger "
                          "keeps it", d.id, ev.registration.mn, exc, extra={"device": d.id, "event": "outbox_full"})
                self._remember(ev.registration.mn, "in", raw, "not stored: outbox full")
                return
            m.stored.labels(d.id, cn).inc()
            verdict = f"stored as batch {seq} ({len(ev.converted)} readings, period {ev.converted.period_s} s)"
        else:
            verdict = "nothing to store (no factor maps to a channel)"
        if not ev.duplicate:  # stored (or nothing to store): a retransmission of it is a duplicate from now on
            self.dedup.add(ev.registration.mn, ev.digest)
        if ev.converted.unmapped:
            verdict += f"; unmapped factors {sorted(set(ev.converted.unmapped))}"
        self._remember(ev.registration.mn, "in", raw, verdict)
        if ev.ack is not None:
            writer.write(ev.ack)
            self._remember(ev.registration.mn, "out", ev.ack, "data answer")

    # -- recent frames, for `cems edge probe` ---------------------------------------------------------------------

    def _remember(self, mn: str | None, direction: str, raw: bytes, verdict: str) -> None:
        if self.observer is not None:
            self.observer(mn, direction, raw, verdict)
        ring = self.recent.get(mn) if mn else None
        if ring is None:
            ring = self.recent.setdefault("(unregistered)", deque(maxlen=RECENT_PER_MN))
        ring.append({"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "direction": direction,
                     "verdict": verdict, "frame": mask_password(raw)[:2000]})
        self._recent_dirty = True

    async def _flush_recent(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._recent_dirty:
                self._write_recent()

    def _write_recent(self) -> None:
        if self.recent_file is None or not self._recent_dirty:
            return
        self._recent_dirty = False
        tmp = self.recent_file.with_name(self.recent_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({mn: list(r) for mn, r in self.recent.items()}, ensure_ascii=False, indent=1))
            tmp.replace(self.recent_file)
        except OSError as exc:
            log.warning("device %s: cannot write %s (%s)", self.device.id, self.recent_file, exc)
