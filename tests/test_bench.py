"""`realtime bench` runs end to end and records its table; it reports times, it never asserts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.benches import bench
from realtime.cli import main


@pytest.mark.integration
def test_bench_prints_both_sizes_and_appends(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "CLIP_FRAMES", 4)  # a shorter synthetic clip; the timed path is unchanged
    rec = tmp_path / "BENCH.md"
    rec.write_text("# Benchmarks\n\nearlier notes\n")
    # 1080p and batch 8 are covered by test_bench_compares_backends_and_batches; kept small here.
    assert main(["bench", "--frames", "3", "--sizes", "640x360,1280x720", "--batch", "1", "--record", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "realtime bench" in out and "Machine:" in out and "onnxruntime" in out
    for size in ("640x360", "1280x720"):
        assert f"| network only | {size} |" in out
        assert f"| full pipeline | {size} |" in out
    ratio = next(ln for ln in out.splitlines() if ln.startswith("| network only | 640x360 |"))
    assert ratio.rstrip(" |").endswith("x")  # the speed ratio to torch FP32, measured in this run
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


@pytest.mark.integration
def test_bench_compares_backends_and_batches(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "CLIP_FRAMES", 8)
    assert main(["bench", "--backend", "onnx", "--compare", "torch", "--frames", "2", "--sizes", "640x360,96x64",
                 "--batch", "1,8", "--pipeline-sizes", "none"]) == 0
    out = capsys.readouterr().out
    for name in ("onnx", "torch"):
        for n in (1, 8):
            assert f"| network only | 640x360 | {name} | {n} |" in out
            assert f"| network only | 96x64 | {name} | {n} |" in out
    assert "| full pipeline |" not in out
    assert "1.00x" in out  # the reference row


@pytest.mark.unit
def test_bad_bench_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--sizes", "big"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("realtime: error:") and "\n" not in err
