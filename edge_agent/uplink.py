"""Kafka uplink: drain the outbox to the readings topic, oldest first, at least once.

Each message carries the encoded batch as its value, the agent id as its key, and three headers:
``cems-agent`` (agent id), ``cems-seq`` (the batch's sequence number) and ``cems-sig`` (HMAC-SHA256 of
the value with the agent's key), so the centre can detect tampering, gaps and duplicates
(``ARCHITECTURE.md``, "Delivery and state"). Keying by agent rather than by source puts an agent's
whole numbered sequence in one partition, in order: the centre's duplicate and hole detection is then
exact with a few integers of state per agent (``ingest/sequence.py``), and every source of the agent
still keeps its order. A file is removed from the outbox only after Kafka acknowledged its message with
``acks=all``; a broker that is down, slow or refusing leaves every unacknowledged batch on disk for the
next drain. Retried sends can duplicate a message; the centre deduplicates on (agent, seq).
"""

from __future__ import annotations

import logging
import threading
import time

from schemas import envelope
from schemas._optional import require
from schemas.agent_batch import decode_message
from schemas.errors import BatchDecodeError

from .outbox import Outbox

__all__ = ["KafkaUplink"]

log = logging.getLogger(__name__)


class KafkaUplink:
    def __init__(self, outbox: Outbox, *, topic: str, agent_id: str, key: bytes, producer_config: dict) -> None:
        require("kafka", extra="edge", purpose="the Kafka uplink (kafka-python)")  # at start, not at the first drain
        self.outbox, self.topic, self.agent_id, self.key = outbox, topic, agent_id, key
        self.producer_config = {
            "acks": "all",
            "enable_idempotence": True,
            "retries": 5,
            "linger_ms": 5,
            "max_request_size": 16 * 2**20,
            # Fail fast while the broker is down: the outbox holds the data and the agent retries with its own
            # backoff, so a blocked bootstrap (30 s by default) would only delay shutdown and reconnection.
            "bootstrap_timeout_ms": 10_000,
            "max_block_ms": 10_000,
            "reconnect_backoff_max_ms": 10_000,
            **producer_config,
        }
        self._key = agent_id.encode()
        self._producer = None
        self.reachable: bool | None = None  # outcome of the last connection attempt (None: not tried yet)
        # Set while the agent shuts down: a drain in progress (in its thread) stops between sends and flush
        # slices, so shutdown never waits out a slow broker; what was not acknowledged stays in the outbox.
        self.stopping = threading.Event()

    def _connect(self):
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(**self.producer_config)
        return self._producer

    def drain(self, max_batches: int = 1000, timeout_s: float = 30.0) -> int:
        """Send up to ``max_batches`` pending batches; return how many Kafka acknowledged."""
        require("kafka", extra="edge", purpose="the Kafka uplink (kafka-python)")
        from kafka.errors import KafkaError

        pending = self.outbox.pending(max_batches)
        if not pending:
            return 0
        try:
            producer = self._connect()
            self.reachable = True
        except KafkaError as exc:
            self.reachable = False
            secured = self.producer_config.get("security_protocol", "PLAINTEXT") != "PLAINTEXT"
            why = "broker unreachable or refused TLS/SASL (kafka.net errors above say which)" if secured \
                else "broker unreachable"
            log.warning("uplink: %s (%s); %d batches wait in the outbox", why, exc, len(pending),
                        extra={"event": "broker_unreachable", "outbox_batches": len(pending)})
            return 0
        sent = []
        for seq in pending:
            if self.stopping.is_set():
                break
            data = self.outbox.read(seq)
            try:
                decode_message(data)  # checksum and framing (any wire version): a corrupt file is never sent
            except BatchDecodeError as exc:  # a corrupted file: keep it for inspection, never send it
                log.error("uplink: outbox batch %d is corrupt (%s); kept, not sent", seq, exc,
                          extra={"event": "corrupt_batch", "seq": seq})
                continue
            headers = list(envelope.headers(self.agent_id, seq, self.key, data).items())
            try:
                sent.append((seq, producer.send(self.topic, key=self._key, value=data, headers=headers)))
            except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms: the rest would wait too
                log.warning("uplink: send failed (%s); %d batch(es) wait in the outbox", exc, len(pending) - len(sent),
                            extra={"event": "send_failed"})
                break
        self._flush(producer, timeout_s)
        acked = 0
        for seq, future in sent:
            try:
                future.get(timeout=0)
            except Exception as exc:
                log.warning("uplink: batch %d not acknowledged (%s); it stays in the outbox", seq, exc,
                            extra={"event": "not_acknowledged", "seq": seq})
                continue
            self.outbox.ack(seq)
            acked += 1
        return acked

    def _flush(self, producer, timeout_s: float) -> None:
        """Flush in one-second slices, so that ``stopping`` cuts a long wait short."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                producer.flush(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                return
            except KafkaError as exc:
                if self.stopping.is_set() or time.monotonic() >= deadline:
                    log.warning("uplink: flush did not complete (%s)", exc, extra={"event": "flush_incomplete"})
                    return

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
