"""The uplink through the local broker's SASL_SSL listener (SCRAM over TLS, certificate from the test CA that
deploy/local/kafka.sh makes): batches arrive signed, with their headers; a wrong password or a broker
certificate the client cannot verify sends nothing, raises nothing out of ``drain`` and keeps every batch on disk.

The credentials are the loopback test broker's (``kafka_sasl`` fixture, ``deploy/local/services.sh env``)."""

from __future__ import annotations

import datetime
import logging
import time
import uuid

import pytest

from edge_agent.config import KafkaSettings
from edge_agent.outbox import Outbox, verify
from edge_agent.uplink import KafkaUplink
from schemas import decode_batch
from tests.fixtures import batch_bytes

pytestmark = pytest.mark.integration
KEY = b"gw-1 secret key"
# A failing connection is retried by kafka-python until bootstrap_timeout_ms (the uplink's default is 10 s);
# the failure cases below wait 3 s so that the whole file stays fast.
FAIL_AFTER = {"bootstrap_timeout_ms": 3000}


def secured(sasl, **overrides) -> KafkaSettings:
    fields = {"bootstrap_servers": sasl.bootstrap, "topic": f"cems.test.secured.{uuid.uuid4().hex[:8]}",
              "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": sasl.username,
              "sasl_password": sasl.password, "ssl_cafile": sasl.cafile}
    return KafkaSettings(**(fields | overrides))


def uplink(outbox: Outbox, settings: KafkaSettings, **extra) -> KafkaUplink:
    return KafkaUplink(outbox, topic=settings.topic, agent_id="gw-1", key=KEY,
                       producer_config=settings.producer_config() | extra)


def filled_outbox(directory, n: int) -> Outbox:
    outbox = Outbox(directory)
    for _ in range(n):
        outbox.put(batch_bytes)
    return outbox


def read_topic(settings: KafkaSettings, expected: int):
    """Read the topic back through the same SASL_SSL listener (producer settings are valid consumer settings)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic, **settings.producer_config(), auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=10_000)
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def topic_exists(settings: KafkaSettings) -> bool:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**settings.producer_config())
    try:
        return settings.topic in consumer.topics()
    finally:
        consumer.close()


def failed_drain(outbox: Outbox, settings: KafkaSettings) -> float:
    """Drain with broken settings: nothing acknowledged, nothing raised, nothing removed. Returns seconds taken."""
    before = outbox.pending()
    up = uplink(outbox, settings, **FAIL_AFTER)
    t0 = time.monotonic()
    try:
        assert up.drain() == 0
        assert up.reachable is False
    finally:
        up.close()
    assert outbox.pending() == before
    return time.monotonic() - t0


def assert_delivered(outbox: Outbox, settings: KafkaSettings, n: int) -> None:
    """The same outbox with the right settings: every batch goes, in order, signed, and leaves the disk."""
    up = uplink(outbox, settings)
    try:
        assert up.drain() == n
    finally:
        up.close()
    assert outbox.pending() == []
    records = read_topic(settings, n)
    assert [decode_batch(r.value).seq for r in records] == list(range(n))
    for r in records:
        headers = dict(r.headers)
        assert headers["cems-agent"] == b"gw-1" and int(headers["cems-seq"]) == decode_batch(r.value).seq
        assert verify(KEY, r.value, headers["cems-sig"])
        assert r.key == b"gw-1"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_drain_over_sasl_ssl_delivers_signed_batches(tmp_path, kafka_sasl, mechanism):
    settings = secured(kafka_sasl, sasl_mechanism=mechanism)
    assert_delivered(filled_outbox(tmp_path, 5), settings, 5)


@pytest.mark.timeout(30)
def test_wrong_password_sends_nothing_and_keeps_the_outbox(tmp_path, kafka_sasl, caplog):
    good = secured(kafka_sasl)
    outbox = filled_outbox(tmp_path, 3)
    caplog.set_level(logging.WARNING)

    took = failed_drain(outbox, secured(kafka_sasl, topic=good.topic, sasl_password="not-the-password"))
    assert took < 15
    # The uplink warns (as for an outage: kafka-python reports both as a bootstrap timeout)...
    assert any(r.name == "edge_agent.uplink" and r.levelno == logging.WARNING for r in caplog.records)
    assert "CERTIFICATE_VERIFY_FAILED" not in caplog.text  # ...but TLS was fine: the broker refused the login
    assert not topic_exists(good)  # not even a metadata request got through

    assert_delivered(outbox, good, 3)  # the kept batches are intact: the right password sends them all


def other_ca(path):
    """A self-signed CA with the same name as the test CA but another key: names must not be enough."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cems-local test CA (loopback only)")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ca", ["system CAs only", "another CA, same name"])
def test_unverifiable_broker_certificate_sends_nothing_and_keeps_the_outbox(tmp_path, kafka_sasl, caplog, ca):
    good = secured(kafka_sasl)
    outbox = filled_outbox(tmp_path / "outbox", 3)
    cafile = None if ca == "system CAs only" else other_ca(tmp_path / "other-ca.pem")
    caplog.set_level(logging.WARNING)

    took = failed_drain(outbox, secured(kafka_sasl, topic=good.topic, ssl_cafile=cafile))
    assert took < 15
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # refused by the client's TLS check, before any password
    assert not topic_exists(good)

    assert_delivered(outbox, good, 3)
