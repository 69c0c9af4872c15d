"""The central roles' Prometheus metrics, scraped over HTTP from :func:`streams.runtime.metrics.serve` on loopback
(the stream worker's are scraped from real worker processes in tests/integration/test_cluster_failover.py and
test_zombie_fencing.py)."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batches import REASONS, Rejection
from streams.runtime.metrics import ReconcilerMetrics, WorkerMetrics, serve
from tests.fixtures import free_port, scrape


def output(accepted=0, duplicates=0, readings=0, reasons=(), hourly=0):
    """What the metrics read of a processor call's :class:`~streams.core.processor.Output`."""
    return SimpleNamespace(accepted=accepted, duplicates=duplicates, readings=readings, hourly=[None] * hourly,
                           dead_letters=[(None, Rejection(r, "detail")) for r in reasons])


def test_the_worker_metrics_over_http():
    m = WorkerMetrics()
    port = free_port()
    serve(m.registry, port)
    m.handled(0, output(accepted=10, duplicates=2, readings=500, reasons=["bad_signature"], hourly=3))
    m.handled(1, output(accepted=4, readings=200, reasons=["bad_signature", "unknown_agent"]))
    m.set_lag({0: 7, 1: 0})
    m.set_lag({1: 5})  # partition 0 moved away: no longer reported
    m.checkpointed(0.3)
    m.fenced_saves.labels("1").inc()
    got = scrape(port)
    assert got[("cems_worker_messages_total", (("partition", "0"),))] == 13  # 10 accepted + 2 duplicates + 1 DLQ
    assert got[("cems_worker_messages_total", (("partition", "1"),))] == 6  # 4 + 0 + 2
    assert got[("cems_worker_readings_total", (("partition", "0"),))] == 500
    assert got[("cems_worker_dead_letters_total", (("reason", "bad_signature"),))] == 2  # one in each call
    assert got[("cems_worker_dead_letters_total", (("reason", "unknown_agent"),))] == 1
    assert got[("cems_worker_duplicates_total", ())] == 2
    assert got[("cems_worker_hourly_records_total", ())] == 3
    assert ("cems_worker_consumer_lag_messages", (("partition", "0"),)) not in got
    assert got[("cems_worker_consumer_lag_messages", (("partition", "1"),))] == 5
    assert got[("cems_worker_checkpoint_seconds_count", ())] == 1
    assert got[("cems_worker_checkpoint_seconds_bucket", (("le", "0.25"),))] == 0  # 0.3 s: above 0.25
    assert got[("cems_worker_checkpoint_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("cems_worker_last_checkpoint_timestamp_seconds", ())] > 0
    assert got[("cems_worker_fenced_saves_total", (("partition", "1"),))] == 1


def test_the_reconciler_metrics_over_http():
    m = ReconcilerMetrics()
    port = free_port()
    serve(m.registry, port)
    alerts = [SimpleNamespace(rule="fuel_metered_vs_reported", severity="high", reason="raised"),
              SimpleNamespace(rule="flatline", severity="medium", reason="raised"),
              SimpleNamespace(rule="flatline", severity="medium", reason="raised")]
    m.ran(alerts, 2.0)
    m.ran([SimpleNamespace(rule="flatline", severity="medium", reason="cleared")], 0.05)
    got = scrape(port)
    raised = (("reason", "raised"), ("rule", "flatline"), ("severity", "medium"))
    assert got[("cems_reconciler_alerts_total", raised)] == 2
    assert got[("cems_reconciler_alerts_total", (("reason", "cleared"), ("rule", "flatline"),
                                                 ("severity", "medium")))] == 1
    assert got[("cems_reconciler_alerts_total", (("reason", "raised"), ("rule", "fuel_metered_vs_reported"),
                                                 ("severity", "high")))] == 1
    assert got[("cems_reconciler_run_seconds_count", ())] == 2
    assert got[("cems_reconciler_run_seconds_sum", ())] == 2.05
    assert got[("cems_reconciler_run_seconds_bucket", (("le", "1.0"),))] == 1  # 0.05 s; 2.0 s is above 1
    assert got[("cems_reconciler_last_run_timestamp_seconds", ())] > 0


def test_no_port_serves_nothing():
    serve(WorkerMetrics().registry, None)  # the default: no endpoint, no thread, no error


calls = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 5), st.integers(0, 10**4),
                           st.lists(st.sampled_from(sorted(REASONS)), max_size=4)), max_size=20)


@settings(max_examples=50, deadline=None)
@given(calls)
def test_the_worker_counters_add_up_over_any_sequence_of_calls(seq):
    m = WorkerMetrics()
    for partition, accepted, duplicates, readings, reasons in seq:
        m.handled(partition, output(accepted, duplicates, readings, reasons))
    for p in range(4):
        mine = [c for c in seq if c[0] == p]
        assert m.value("cems_worker_messages_total", partition=str(p)) == sum(a + d + len(r) for _, a, d, _, r in mine)
        assert m.value("cems_worker_readings_total", partition=str(p)) == sum(c[3] for c in mine)
    for reason in REASONS:
        assert m.value("cems_worker_dead_letters_total", reason=reason) == sum(c[4].count(reason) for c in seq)
    assert m.value("cems_worker_duplicates_total") == sum(c[2] for c in seq)
