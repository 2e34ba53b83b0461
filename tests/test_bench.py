"""`realtime bench` runs end to end and records its table; it reports times, it never asserts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime import bench
from realtime.cli import main


@pytest.mark.integration
def test_bench_prints_both_sizes_and_appends(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "CLIP_FRAMES", 4)  # a shorter synthetic clip; the timed path is unchanged
    rec = tmp_path / "BENCH.md"
    rec.write_text("# Benchmarks\n\nearlier notes\n")
    assert main(["bench", "--frames", "3", "--record", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "realtime bench" in out and "Machine:" in out and "onnxruntime" in out
    for size in ("640x360", "1280x720"):
        assert f"| network only | {size} |" in out
        assert f"| full pipeline | {size} |" in out
    text = rec.read_text()
    assert text.startswith("# Benchmarks\n\nearlier notes\n")  # appended, not overwritten
    assert out.strip() in text


@pytest.mark.unit
def test_record_creates_titled_file(tmp_path: Path) -> None:
    rec = tmp_path / "new.md"
    bench.record(rec, "block one")
    bench.record(rec, "block two")
    text = rec.read_text()
    assert text.startswith("# Benchmarks")
    assert text.index("block one") < text.index("block two")


@pytest.mark.unit
def test_frames_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--frames", "0"]) == 2
    assert capsys.readouterr().err.startswith("realtime: error:")
