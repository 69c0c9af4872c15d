"""QA record import (ingest/qa.py): every kind from CSV and JSON, all or nothing, file:line: field errors,
and property tests: random or mutated input gives records or a QaImportError, never a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.qa import (
    CSV_LAYOUTS,
    QaImportError,
    load_records,
    parse_bytes,
    parse_csv,
    parse_json,
)
from schemas.qa import (
    ComparisonTest,
    DriftCheck,
    LinearityCheck,
    VelocityTraverse,
    qa_json_schema,
)

DRIFT = """site_id,source_id,channel_id,quantity,unit,time,check,reference_value,measured_value,full_scale
js-cement-001,kiln1-stack,co2,a05001,%,2026-03-01T08:00:00+08:00,zero,0,0.1,25
js-cement-001,kiln1-stack,co2,a05001,%,2026-03-01T08:05:00+08:00,span,20,20.3,25
js-cement-001,kiln1-stack,o2,a19001,%,2026-03-01T08:10:00+08:00,span,20.9,20.8,
"""

RATA = """test_id,site_id,source_id,channel_id,quantity,unit,run,start,end,reference_value,cems_value,used
R-2026-01,js-cement-001,kiln1-stack,co2,a05001,%,1,2026-03-02T09:00:00+08:00,2026-03-02T09:21:00+08:00,12.1,12.0,
R-2026-01,js-cement-001,kiln1-stack,co2,a05001,%,2,2026-03-02T09:30:00+08:00,2026-03-02T09:51:00+08:00,12.3,12.2,true
R-2026-01,js-cement-001,kiln1-stack,co2,a05001,%,3,2026-03-02T10:00:00+08:00,2026-03-02T10:21:00+08:00,12.2,11.6,false
"""

LINEARITY = """test_id,site_id,source_id,channel_id,quantity,unit,level,time,reference_value,measured_value
L-1,js-cement-001,kiln1-stack,co2,a05001,%,low,2026-03-03T08:00:00Z,5.0,5.1
L-1,js-cement-001,kiln1-stack,co2,a05001,%,mid,2026-03-03T08:05:00Z,10.0,10.5
L-1,js-cement-001,kiln1-stack,co2,a05001,%,high,2026-03-03T08:10:00Z,20.0,19.1
"""

TRAVERSE = """test_id,site_id,source_id,channel_id,run,start,end,cems_velocity_m_s,point,reference_velocity_m_s
KV-1,js-cement-001,kiln1-stack,vel,1,2026-03-04T08:00:00Z,2026-03-04T08:30:00Z,10.0,1,11
KV-1,js-cement-001,kiln1-stack,vel,1,2026-03-04T08:00:00Z,2026-03-04T08:30:00Z,10.0,2,13
KV-1,js-cement-001,kiln1-stack,vel,2,2026-03-04T09:00:00Z,2026-03-04T09:30:00Z,10.5,1,12.6
"""

GOOD = {"drift.csv": DRIFT, "rata.csv": RATA, "linearity.csv": LINEARITY, "traverse.csv": TRAVERSE}


def problems(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(p) for p in exc.value.problems]


def test_every_kind_from_csv():
    drift = parse_csv(DRIFT, "drift.csv")
    assert [type(r) for r in drift] == [DriftCheck] * 3
    assert drift[1].reference_value == 20.0 and drift[1].full_scale == 25.0 and drift[2].full_scale is None
    assert drift[0].time.utcoffset().total_seconds() == 8 * 3600
    (rata,) = parse_csv(RATA, "rata.csv")
    assert isinstance(rata, ComparisonTest) and [r.used for r in rata.runs] == [True, True, False]
    (lin,) = parse_csv(LINEARITY, "linearity.csv")
    assert isinstance(lin, LinearityCheck) and [i.level for i in lin.injections] == ["low", "mid", "high"]
    (kv,) = parse_csv(TRAVERSE, "traverse.csv")
    assert isinstance(kv, VelocityTraverse)
    assert [[p.reference_velocity_m_s for p in r.points] for r in kv.runs] == [[11.0, 13.0], [12.6]]
    assert [r.cems_velocity_m_s for r in kv.runs] == [10.0, 10.5]


def test_json_round_trip_of_every_kind():
    records = [r for name, text in GOOD.items() for r in parse_csv(text, name)]
    body = json.dumps([r.model_dump(mode="json") for r in records], indent=1).encode()
    assert parse_bytes(body, "qa.json") == records
    single = json.dumps(records[0].model_dump(mode="json"))
    assert parse_json(single) == records[:1]


def test_files_are_all_or_nothing(tmp_path):
    for name, text in GOOD.items():
        (tmp_path / name).write_text(text)
    assert len(load_records(*sorted(tmp_path.iterdir()))) == 6
    bad = tmp_path / "bad.csv"
    bad.write_text(DRIFT.replace("js-cement-001", "js-cement-002").replace("20,20.3,25", "20,20.3x,25"))
    with pytest.raises(QaImportError, match="1 problem, nothing imported") as exc:
        load_records(*sorted(tmp_path.iterdir()))
    assert problems(exc) == [f"{bad}:3: measured_value (js-cement-002/kiln1-stack/co2/span/2026-03-01T08:05:00+08:00): "
                             "Input should be a valid number, unable to parse string as a number"]
    # the same checks in two files: the second is a duplicate, whichever file it is in
    (tmp_path / "bad.csv").write_text(DRIFT)
    with pytest.raises(QaImportError) as exc:
        load_records(tmp_path / "drift.csv", tmp_path / "bad.csv")
    assert len(exc.value.problems) == 3
    assert problems(exc)[0] == (f"{bad}:2: (record) (js-cement-001/kiln1-stack/co2/zero/2026-03-01T08:00:00+08:00): "
                                f"same check (site, source, channel, check, time) as the record at "
                                f"{tmp_path / 'drift.csv'}:2")


def test_csv_errors_name_file_line_and_field():
    text = (RATA.replace(",12.3,12.2,true", ",12.3,,true")  # line 3: no CEMS value
                .replace("10:21:00+08:00,12.2", "09:59:00+08:00,12.2")  # line 4: ends before it starts
                + "R-2026-01,js-cement-001,kiln1-stack,o2,a05001,%,4,2026-03-02T11:00:00+08:00,"
                  "2026-03-02T11:21:00+08:00,12,12,\n")  # line 5: another channel in the same test
    with pytest.raises(QaImportError) as exc:
        parse_csv(text, "rata.csv")
    assert problems(exc) == [
        "rata.csv:3: cems_value (js-cement-001/R-2026-01): missing field (no column gives it)",
        "rata.csv:4: (run) (js-cement-001/R-2026-01): end 2026-03-02T09:59:00+08:00 is not after start "
        "2026-03-02T10:00:00+08:00",
        "rata.csv:5: channel_id (js-cement-001/R-2026-01): 'o2' differs from 'co2' on line 2 of the same test",
    ]


def test_csv_record_level_errors():
    with pytest.raises(QaImportError) as exc:
        parse_csv(DRIFT.replace("a05001,%,2026-03-01T08:00:00+08:00", "a05001,kg,2026-03-01T08:00:00"), "d.csv")
    assert problems(exc) == ["d.csv:2: time (js-cement-001/kiln1-stack/co2/zero/2026-03-01T08:00:00): "
                             "Input should have timezone info"]
    with pytest.raises(QaImportError) as exc:
        parse_csv(DRIFT.replace("a05001,%,2026-03-01T08:00:00+08:00", "a05001,kg,2026-03-01T08:00:00Z"), "d.csv")
    assert problems(exc) == ["d.csv:2: (record) (js-cement-001/kiln1-stack/co2/zero/2026-03-01T08:00:00Z): "
                             "unit 'kg' is not a unit of a05001 (carbon dioxide); use one of "
                             "['mg/m3', 'g/m3', '%', 'ppm']"]
    with pytest.raises(QaImportError) as exc:
        parse_csv(LINEARITY.rsplit("\n", 2)[0] + "\n", "lin.csv")
    assert problems(exc) == ["lin.csv:2: (record) (js-cement-001/L-1): no injection at level high; a linearity "
                             "check needs low, mid and high"]
    with pytest.raises(QaImportError) as exc:
        parse_csv(TRAVERSE.replace("10.5,1,12.6", "10.5,1,12.6\nKV-1,js-cement-001,kiln1-stack,vel,2,"
                                   "2026-03-04T09:00:00Z,2026-03-04T09:30:00Z,11,2,12"), "kv.csv")
    assert problems(exc) == ["kv.csv:5: cems_velocity_m_s (js-cement-001/KV-1): '11' differs from '10.5' on line 4 "
                             "of the same run"]


def test_header_rows_and_duplicates():
    with pytest.raises(QaImportError) as exc:
        parse_csv("site_id,source_id,channel_id,quantity,unit,time,check,reference_value\n", "h.csv")
    (msg,) = problems(exc)
    assert msg.startswith("h.csv:1: (header): no QA record layout matches; closest is drift_check, missing "
                          "['measured_value'], unknown []")
    with pytest.raises(QaImportError, match="empty file"):
        parse_csv("", "e.csv")
    with pytest.raises(QaImportError, match=r"e.csv:1: \(file\): no data rows"):
        parse_csv(DRIFT.split("\n")[0] + "\n\n", "e.csv")
    with pytest.raises(QaImportError) as exc:
        parse_csv(DRIFT + DRIFT.split("\n")[1] + ",extra\n", "d.csv")
    assert problems(exc) == ["d.csv:5: (row): 11 cells, the header has 10"]
    with pytest.raises(QaImportError) as exc:
        parse_csv(DRIFT + DRIFT.split("\n")[2] + "\n", "d.csv")
    assert problems(exc) == ["d.csv:5: (record) (js-cement-001/kiln1-stack/co2/span/2026-03-01T08:05:00+08:00): "
                             "same check (site, source, channel, check, time) as the record at d.csv:3"]


def test_json_errors_name_file_line_and_field():
    rec = parse_csv(LINEARITY, "l.csv")[0].model_dump(mode="json")
    rec["injections"][1]["measured_value"] = "a"
    body = json.dumps([rec, {"kind": "nope"}, 3], indent=1)
    with pytest.raises(QaImportError) as exc:
        parse_json(body, "qa.json")
    lines = body.split("\n")
    line_a = next(i for i, s in enumerate(lines, 1) if '"a"' in s)
    assert problems(exc) == [
        f"qa.json:{line_a}: injections[1].measured_value (js-cement-001/L-1): Input should be a valid number, "
        "unable to parse string as a number",
        f"qa.json:{len(lines) - 4}: (record): Input tag 'nope' found using 'kind' does not match any of the expected "
        "tags: 'drift_check', 'comparison_test', 'linearity_check', 'velocity_traverse'",
        f"qa.json:{len(lines) - 1}: (record): expected an object with a kind, got int",
    ]
    with pytest.raises(QaImportError, match=r"q.json:1: \(json\): Expecting"):
        parse_json("[{", "q.json")
    with pytest.raises(QaImportError, match="duplicate key 'kind'"):
        parse_json('{"kind": "drift_check", "kind": "drift_check"}', "q.json")
    with pytest.raises(QaImportError, match="no records"):
        parse_json("[]", "q.json")


def test_bytes_names_sizes_and_encodings(tmp_path):
    with pytest.raises(QaImportError, match=r"x.txt: \(file\): expected a .csv or .json name"):
        parse_bytes(b"", "x.txt")
    with pytest.raises(QaImportError, match="limit is 10"):
        parse_bytes(DRIFT.encode(), "d.csv", max_bytes=10)
    with pytest.raises(QaImportError, match=r"d.csv: \(file\): not UTF-8"):
        parse_bytes(b"\xff\xfe", "d.csv")
    assert len(parse_bytes(b"\xef\xbb\xbf" + DRIFT.encode(), "upload.CSV")) == 3
    with pytest.raises(QaImportError, match="cannot read"):
        load_records(tmp_path / "missing.csv")
    with pytest.raises(QaImportError, match="no files given"):
        load_records()


def test_committed_schema_covers_every_kind():
    kinds = {s["properties"]["kind"]["const"] for s in qa_json_schema()["$defs"].values()
             if "kind" in s.get("properties", {})}
    assert kinds == set(CSV_LAYOUTS)


# --- property tests -------------------------------------------------------------------------------

CELL = st.one_of(st.sampled_from(["", "0", "-1", "nan", "inf", "1e400", "zero", "span", "low", "high", "true",
                                  "a05001", "%", "m/s", "2026-13-01T00:00:00Z", "2026-03-01T08:00:00+08:00", '"',
                                  "x,y", "\n", "R-2026-01", "js-cement-001"]),
                 st.text(max_size=12))


def _accepts(call) -> None:
    """The call returns records or raises QaImportError whose problems each name a place and a field."""
    try:
        records = call()
    except QaImportError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.where and p.field and p.message
    else:
        assert isinstance(records, list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(GOOD)), data=st.data())
def test_mutated_csv_gives_records_or_a_clear_error(name, data):
    lines = GOOD[name].split("\n")
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["cell", "drop", "dup", "text"]))
        cells = lines[i].split(",")
        if action == "cell":
            cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(CELL)
            lines[i] = ",".join(cells)
        elif action == "drop":
            del lines[i]
            if not lines:
                lines = [""]
        elif action == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = data.draw(st.text(max_size=40))
    text = "\n".join(lines)
    _accepts(lambda: parse_csv(text, name))
    _accepts(lambda: parse_bytes(text.encode("utf-8", "surrogatepass"), name))


def _mutate(value, data):
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if data.draw(st.booleans()):
            del out[key]
        else:
            out[key] = _mutate(value[key], data)
        return out
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate(value[i], data), *value[i + 1:]]
    return data.draw(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), CELL,
                               st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.none(),
                                                                                    max_size=2)))


RECORDS = [r.model_dump(mode="json") for name, text in GOOD.items() for r in parse_csv(text, name)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_json_gives_records_or_a_clear_error(data):
    doc = RECORDS
    for _ in range(data.draw(st.integers(1, 3))):
        doc = _mutate(doc, data)
    body = json.dumps(doc)  # NaN and infinities go out as NaN/Infinity, which the import must refuse clearly
    _accepts(lambda: parse_json(body, "qa.json"))


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300), name=st.sampled_from(["a.csv", "a.json", "a.txt", "a"]))
def test_random_bytes_give_records_or_a_clear_error(raw, name):
    _accepts(lambda: parse_bytes(raw, name))
