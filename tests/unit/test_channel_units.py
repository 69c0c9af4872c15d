"""A batch's channel table against the site file, on the stream worker's path (streams/core/processor.py): values in
another unit of the same dimension are converted to the site file's unit; a unit that does not convert and a quantity
code that contradicts the site file are refused, naming the channel and what differs. The conversion table
(schemas/quantities.py ``unit_conversion``) with hand-computed factors."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.outbox import sign
from schemas import ReadingBatch, decode_batch
from schemas.batch import ChannelSpec
from schemas.quantities import unit_conversion
from streams.core.processor import Message
from tests.fixtures import KEYS, final, processor, two_stacks

MESSAGES, _ = two_stacks()
HEAD = MESSAGES[:1800]  # 75 min of both agents (2 x 900 batches of 5 s): hour 0 of each stack is published


@pytest.mark.parametrize(("quantity", "src", "dst", "value", "expected"), [
    ("a05001", "ppm", "%", 125_000.0, 12.5),  # 1 % = 10^4 ppm: 125,000 / 10^4
    ("a05001", "%", "ppm", 12.5, 125_000.0),
    ("a05001", "g/m3", "mg/m3", 0.25, 250.0),  # 1 g = 10^3 mg
    ("a00000", "m3/s", "m3/h", 2.0, 7_200.0),  # 1 h = 3,600 s: 2 x 3,600
    ("a00000", "m3/h", "m3/s", 7_200.0, 2.0),
    ("a01012", "degC", "K", 20.0, 293.15),  # 0 degC = 273.15 K
    ("a01012", "K", "degC", 293.15, 20.0),
    ("a01013", "Pa", "kPa", -250.0, -0.25),  # 1 kPa = 10^3 Pa
    ("xf0003", "kg", "t", 1_500.0, 1.5),
    ("xf0001", "kg/h", "t/h", 9_000.0, 9.0),
    ("a19001", "%", "%", 8.25, 8.25),  # the same unit: as it is
])
def test_units_of_one_dimension_convert(quantity, src, dst, value, expected):
    scale, offset = unit_conversion(quantity, src, dst)
    assert value * scale + offset == pytest.approx(expected, rel=1e-15, abs=1e-12)


@pytest.mark.parametrize(("quantity", "src", "dst"), [
    ("a05001", "ppm", "mg/m3"),  # a change of dimension: needs the molar mass and the reference state (HJ212-D20)
    ("a05001", "%", "mg/m3"),
    ("a01014", "ppm", "%"),  # moisture has no ppm in the quantity table
    ("a19001", "%", "mg/m3"),  # O2 is a volume fraction only
    ("a05001", "PPM", "%"),  # unit spellings are exact
    ("zz0001", "%", "ppm"),  # an unknown quantity
])
def test_other_unit_pairs_do_not_convert(quantity, src, dst):
    assert unit_conversion(quantity, src, dst) is None


def rewritten(m: Message, channel: str, quantity: str | None = None, unit: str | None = None,
              scale: float = 1.0, offset: float = 0.0) -> Message:
    """A stream message with one channel declared otherwise (its values x scale + offset), re-signed."""
    b = decode_batch(m.value)
    k = [c.id for c in b.channels].index(channel)
    channels = [ChannelSpec(c.id, quantity or c.quantity, unit or c.unit) if i == k else c
                for i, c in enumerate(b.channels)]
    value = np.where(b.channel == k, b.value * scale + offset, b.value)
    data = ReadingBatch.from_columns(agent_id=b.agent_id, source_id=b.source_id, seq=b.seq, channels=channels,
                                     ts_ns=b.ts_ns, channel=b.channel, value=value, flag=b.flag).encode()
    return Message(m.offset, data, m.headers | {"cems-sig": sign(KEYS[b.agent_id], data)}, m.timestamp_ms)


def records(messages) -> dict:
    p = processor()
    out = []
    for i in range(0, len(messages), 300):
        o = p.process(messages[i:i + 300])
        assert not o.dead_letters, o.dead_letters[:1]
        out += o.hourly
    return final(out)


def test_a_unit_change_mid_stream_is_converted_and_the_hours_stay_the_same():
    """gw-a switches its CO2 to ppm (x 10^4) and its temperature to kelvin (+ 273.15) halfway through hour 0: the
    hours are those of the unchanged stream, within the rounding of the conversions (a few parts in 10^16)."""
    half = len(HEAD) // 2
    changed = HEAD[:half] + [rewritten(rewritten(m, "co2", unit="ppm", scale=1e4), "temp", unit="K", offset=273.15)
                             if m.headers["cems-agent"] == b"gw-a" else m for m in HEAD[half:]]
    got, want = records(changed), records(HEAD)
    assert got.keys() == want.keys() and len(got) == 2
    for k, r in want.items():
        assert got[k].status == r.status == "measured"
        assert got[k].co2_kg == pytest.approx(r.co2_kg, rel=1e-12)
        assert got[k].flow_m3_h == pytest.approx(r.flow_m3_h, rel=1e-12)  # the temperature enters the flow


@pytest.mark.parametrize(("change", "reason", "detail"), [
    ({"unit": "mg/m3"}, "unit_mismatch",
     "source 'stack0' channel 'co2' (a05001): unit 'mg/m3' in the batch cannot be converted to the site file's '%'"),
    ({"quantity": "a19001"}, "quantity_mismatch",
     "source 'stack0' channel 'co2': the batch gives quantity code 'a19001', the site file 'a05001'"),
    ({"unit": "ppm", "quantity": "a01014"}, "quantity_mismatch",  # the code is checked before the unit
     "source 'stack0' channel 'co2': the batch gives quantity code 'a01014', the site file 'a05001'"),
])
def test_a_channel_that_contradicts_the_site_file_is_dead_lettered_naming_it(change, reason, detail):
    p = processor()
    m = next(m for m in HEAD if m.headers["cems-agent"] == b"gw-a")
    out = p.process([rewritten(m, "co2", **change)])
    assert [(r.reason, r.detail) for _, r in out.dead_letters] == [(reason, detail)]
    assert out.readings == 0 and out.accepted == 0
