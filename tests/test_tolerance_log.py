"""tests/tolerance_log.py: what the float-comparing tests record, and the table of
tests/TOLERANCES.md built from several code paths' logs."""

from tolerance_log import ENV, record, record_close, summarize


def test_records_the_largest_difference_and_the_fraction_used(tmp_path, monkeypatch):
    log = tmp_path / "path.tsv"
    monkeypatch.setenv(ENV, str(log))
    record("max |fused - alone| seed 1", 2e-6, 1e-5)
    record("max |fused - alone| seed 2", 5e-6, 1e-5)
    record_close("grad: copy 0 conv1.weight", [1.0, 2.0], [1.0, 2.0 + 1e-6], atol=1e-6, rtol=0.0)
    lines = [line.split("\t") for line in log.read_text().splitlines()]
    assert [float(row[6]) for row in lines] == [0.2, 0.5, 1.0]  # diff / tolerance
    assert float(lines[2][3]) == 1e-6  # 2.000001 - 2.0 in float64
    table = summarize([str(log)])
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    # the two seeds fold into one row holding the worse; the per-parameter name is dropped
    assert len(rows) == 2
    fused = next(r for r in rows if "fused" in r)
    assert r"\|fused - alone\|" in fused and "| 0.5 (5.0e-06) |" in fused
    assert table.rstrip().endswith(": 1")


def test_records_nothing_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record("x", 1.0, 1.0)
    record_close("y", [1.0], [2.0], atol=1.0)
    assert list(tmp_path.iterdir()) == []
