"""Flow, warping and evaluation metrics with known answers, and a smoke run of `python -m train eval` on generated data."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from engines.artifact import DEFAULT_MODEL_DIR, META_FILE
from engines.features import ExpansionFeatures
from engines.style_losses import pooled_style_stats, style_stats
from engines.temporal import warp
from train.eval_metrics import (
    ModelResult,
    Reference,
    Stylizer,
    fidelity,
    load_student_or_teacher,
    sheet_columns,
    style_map,
)
from train.eval_report import LABEL_BAR, side_by_side, slug, write_tables, write_video
from train.eval_speed import SPEED_WARMUP, time_interleaved
from train.evaluate import evaluate
from train.flow import flow, occlusion_mask, random_affine_flow, smooth_random_flow, warp_np
from train.metrics import edge_map, edge_ssim, psnr, ssim, style_distance, warping_error

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]


def _texture(h: int, w: int, seed: int = 0, blur: float = 2.0) -> np.ndarray:
    """Smooth random RGB texture, uint8 (H, W, 3): something optical flow can lock on to."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(noise, (0, 0), blur)
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def _nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def features() -> ExpansionFeatures:
    return ExpansionFeatures()


# ---------------------------------------------------------------- flow and warping


def test_warp_by_integer_shift_is_a_roll() -> None:
    img = _texture(40, 56).astype(np.float32) / 255.0
    dx, dy = 3, -2
    fl = np.zeros((40, 56, 2), np.float32)
    fl[..., 0], fl[..., 1] = dx, dy
    expected = np.roll(img, (-dy, -dx), axis=(0, 1))  # img(p + (dx, dy))
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(warp_np(img, fl)[inner], expected[inner], atol=1e-6)
    t = warp(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(fl).permute(2, 0, 1)[None])
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy()[inner], expected[inner], atol=1e-5)


def test_warp_np_and_torch_warp_agree() -> None:
    img = _texture(48, 64, seed=1).astype(np.float32) / 255.0
    fl = smooth_random_flow(1, 48, 64, torch.Generator().manual_seed(0), magnitude=6.0)
    t = warp(torch.from_numpy(img).permute(2, 0, 1)[None], fl)[0].permute(1, 2, 0).numpy()
    n = warp_np(img, fl[0].permute(1, 2, 0).numpy().copy())
    # cv2.remap interpolates at 1/32 pixel, grid_sample exactly: equal up to that rounding, borders included.
    assert np.abs(t - n).max() < 5e-3


def test_flow_recovers_known_affine_motion() -> None:
    """warp(x, F) is a frame whose flow back to x is F: DIS finds it, in OpenCV's convention."""
    x = _texture(96, 128, seed=2, blur=1.5)
    fl = random_affine_flow(1, 96, 128, torch.Generator().manual_seed(3))
    moved = warp(_nchw(x), fl)[0].permute(1, 2, 0).numpy()
    b = (moved * 255 + 0.5).astype(np.uint8)
    est = flow(b, x)
    err = np.linalg.norm(est - fl[0].permute(1, 2, 0).numpy(), axis=-1)[16:-16, 16:-16]
    assert np.median(err) < 0.3


def test_synthetic_flows_are_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    shift_only = random_affine_flow(4, 20, 30, g, max_shift=5.0, max_rot_deg=0.0, max_scale=0.0)
    assert shift_only.shape == (4, 2, 20, 30)
    # No rotation or zoom: every pixel moves by the same vector, within the limit.
    assert torch.allclose(shift_only, shift_only[:, :, :1, :1].expand_as(shift_only), atol=1e-5)
    assert shift_only.abs().max() <= 5.0
    still = random_affine_flow(1, 11, 11, torch.Generator(), max_shift=0.0, max_rot_deg=0.0, max_scale=0.0)
    assert still.abs().max() < 1e-6
    # A zoom about the centre: the centre stays, points move outward in proportion to their distance.
    zoom = random_affine_flow(8, 21, 21, torch.Generator().manual_seed(2), max_shift=0.0, max_rot_deg=0.0)
    assert zoom[:, :, 10, 10].abs().max() < 1e-5
    assert torch.allclose(zoom[:, 0, 10, 20], -zoom[:, 0, 10, 0], atol=1e-5) and zoom.abs().max() <= 0.04 * 10 + 1e-5
    smooth = smooth_random_flow(2, 32, 48, torch.Generator().manual_seed(1), magnitude=4.0, grid=4)
    assert smooth.shape == (2, 2, 32, 48) and smooth.abs().max() < 4.0 * 1.3
    assert (smooth[..., 1:] - smooth[..., :-1]).abs().max() < 1.0  # smooth: neighbours move alike
    again = smooth_random_flow(2, 32, 48, torch.Generator().manual_seed(1), magnitude=4.0, grid=4)
    assert torch.equal(smooth, again)


def test_occlusion_mask_known_cases() -> None:
    h, w = 40, 50
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0], fwd[..., 1] = 3.0, -2.0
    mask = occlusion_mask(fwd, -fwd)
    assert mask.dtype == np.float32 and mask.shape == (h, w)
    assert mask[4:-4, 4:-4].min() == 1.0  # consistent translation: all valid away from the borders
    assert mask[:, -3:].max() == 0.0 and mask[:2, :].max() == 0.0  # matches outside the other frame
    assert occlusion_mask(fwd, np.zeros_like(fwd))[4:-4, 4:-4].max() == 0.0  # the flow does not come back
    split = np.zeros((h, w, 2), np.float32)
    split[:, w // 2 :, 0] = 4.0  # the right half moves: a motion boundary down the middle
    back = np.zeros_like(split)
    back[:, w // 2 + 4 :, 0] = -4.0
    m = occlusion_mask(split, back)
    assert m[10:-10, w // 2 - 1 : w // 2 + 1].max() == 0.0
    assert m[10:-10, 5:15].min() == 1.0


# ---------------------------------------------------------------- warping error


def _translating_clip(n: int = 5, step: int = 2) -> list[np.ndarray]:
    base = _texture(72, 96 + n * step, seed=4)
    return [np.ascontiguousarray(base[:, i * step : i * step + 96]) for i in range(n)]


def test_warping_error_static_and_scrambled() -> None:
    still = [_texture(64, 80, seed=5)] * 4
    assert warping_error(still, still) < 1e-6
    clip = _translating_clip()
    floor = warping_error(clip, clip)
    assert floor < 2e-3  # the flow explains a pure pan
    rng = np.random.default_rng(0)
    scrambled = [rng.integers(0, 256, f.shape, dtype=np.uint8) for f in clip]
    assert warping_error(clip, scrambled) > 0.1  # independent uniform noise: E[(a - b)^2] = 1/6
    assert warping_error(clip, clip[::-1]) > 20 * floor
    with pytest.raises(ValueError):
        warping_error(clip, clip[:-1])


# ---------------------------------------------------------------- image metrics


def test_psnr_and_ssim_identities() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert psnr(x, x) == math.inf
    assert abs(psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1)) - 20.0) < 1e-4
    assert abs(ssim(x, x) - 1.0) < 1e-6
    y = torch.rand(2, 3, 32, 32)
    assert abs(ssim(x, y) - ssim(y, x)) < 1e-6 and ssim(x, y) < 0.1
    # Flat images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, 0.6, 0.01**2
    flat = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert abs(flat - (2 * a * b + c1) / (a * a + b * b + c1)) < 1e-6


def test_edge_map_and_edge_ssim() -> None:
    step = torch.zeros(1, 3, 16, 16)
    step[..., 8:] = 1.0
    e = edge_map(step)
    assert e.shape == (1, 1, 16, 16)
    assert torch.allclose(e[0, 0, :, 7:9], torch.ones(16, 2)) and e[0, 0, :, :6].max() == 0.0
    x = _nchw(_texture(48, 64, seed=6))
    assert abs(edge_ssim(x, x) - 1.0) < 1e-6
    # Same edges in another colour scheme keep most of the structure; a flat image keeps none.
    assert edge_ssim(x, 1.0 - x) > 0.99
    assert edge_ssim(x, torch.full_like(x, 0.5)) < 0.2


# ---------------------------------------------------------------- style distance


def test_style_distance_zero_for_the_style_images_themselves(features: ExpansionFeatures) -> None:
    s1 = torch.from_numpy(_texture(64, 64, seed=7, blur=1.0)).permute(2, 0, 1).float() / 255.0
    s2 = torch.rand(3, 64, 64)
    stats = style_stats(features, [s1, s2])
    outputs = torch.stack([s1, s2])
    assert style_distance(features, outputs, stats.mix(torch.eye(2))) < 1e-6
    swapped = stats.mix(torch.eye(2).flip(0))
    assert style_distance(features, outputs, swapped) > 1e-2


def test_pooled_stats_of_one_reference_are_its_own(features: ExpansionFeatures) -> None:
    a, b = torch.rand(3, 48, 48), torch.full((3, 48, 48), 0.4)
    single = style_stats(features, [a, b])
    pooled = pooled_style_stats(features, [[a], [b, b], [a, b]])
    for k in single.mu:
        assert torch.allclose(pooled.mu[k][:2], single.mu[k], atol=1e-6)
        assert torch.allclose(pooled.sigma[k][:2], single.sigma[k], atol=1e-5)
        assert torch.allclose(pooled.mu[k][2], single.mu[k].mean(0), atol=1e-6)
        # A fused style spreads wider than the average of its references' spreads.
        assert (pooled.sigma[k][2] >= single.sigma[k].mean(0) - 1e-6).all()


# ---------------------------------------------------------------- stylizers and the eval command


def test_student_stylizer_and_sheet_columns() -> None:
    model = load_student_or_teacher(DEFAULT_MODEL_DIR)
    assert model.style_names[0] == "vangogh" and len(model.style_refs) == len(model.style_names)
    x = torch.rand(2, 3, 37, 50)  # not a multiple of 8: padded and cropped back
    w = torch.eye(len(model.style_names))[:2]
    y = model(x, w, torch.zeros(2, 1))
    assert y.shape == x.shape and torch.allclose(y, x, atol=1e-6)  # strength 0 is the identity
    labels = [c for c, _, _ in sheet_columns(("a", "b", "c"))]
    assert labels == ["a", "b", "c", "a+b", "b+c", "a x0.25", "a x0.5", "a x0.75"]
    with pytest.raises(ValueError):
        load_student_or_teacher(REPO / "README.md")


def _fake_data(root: Path) -> None:
    """Held-out photos, the default model's style files and a held-out clip, all tiny and generated."""
    (root / "styles").mkdir(parents=True)
    sources = json.loads((DEFAULT_MODEL_DIR / META_FILE).read_text())["provenance"]["styles"]
    files = [f for v in sources.values() for f in ([v] if isinstance(v, str) else v)]  # a fused style has several
    for i, name in enumerate(files):
        Image.fromarray(_texture(64, 64, seed=20 + i, blur=1.0 + i)).save(root / "styles" / name)
    _held_out(root)


def _held_out(root: Path) -> None:
    """Two held-out photos and the held-out clip (6 frames, a pan), tiny and generated, under a data root."""
    from train.data import HELD_OUT, HELD_OUT_CLIP

    for i, rel in enumerate(HELD_OUT[:2]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_texture(48, 64, seed=10 + i)).save(root / rel)
    import av

    (root / HELD_OUT_CLIP).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(root / HELD_OUT_CLIP), "w") as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in _translating_clip(n=6, step=1):
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:48, :64]), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_models_with_different_banks_are_also_compared_on_their_shared_styles(tmp_path: Path) -> None:
    # A 3-style model against a 2-style one: the whole-bank means differ in what they average, so the tables
    # add both models' means over the two shared styles, and the CSV carries per-style edge SSIM.
    a = ModelResult("a", ("x", "y", "z"), {"x": 0.10, "y": 0.20, "z": 0.60}, {"x": 0.9, "y": 0.8, "z": 0.7},
                    0.3, 0.001, 0.001)
    b = ModelResult("b", ("y", "x"), {"y": 0.30, "x": 0.20}, {"y": 1.0, "x": 0.9}, 0.3, 0.001, 0.001)
    md = write_tables([a, b], 0.0005, tmp_path)
    assert "On the 2 styles every model has (x, y):" in md
    assert "| a | 0.1500 | 0.850 |" in md and "| b | 0.2500 | 0.950 |" in md
    assert a.on(["x", "y"]) == pytest.approx((0.15, 0.85))
    rows = {r["model"]: r for r in csv.DictReader((tmp_path / "metrics.csv").open())}
    assert float(rows["a"]["edge_ssim_z"]) == pytest.approx(0.7) and rows["b"]["edge_ssim_z"] == ""
    same = write_tables([a, a], 0.0005, tmp_path)
    assert "every model has" not in same  # one bank: the whole-bank means already compare like with like


def test_eval_command_smoke(tmp_path: Path) -> None:
    _fake_data(tmp_path / "data")
    out = tmp_path / "eval"
    env = {**os.environ, "STYLIZER_DATA": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "train", "eval", str(DEFAULT_MODEL_DIR), "--out", str(out),
           "--size", "48", "--frames", "4", "--height", "48"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "input (floor)" in res.stdout
    assert (out / "metrics.md").is_file()
    sheets = list(out.glob("sheet_*.png"))
    assert len(sheets) == 1
    with Image.open(sheets[0]) as im:
        assert im.height == 44 + 2 * 48 and im.width >= 12 * 48  # 2 photos; input + 6 + 2 blends + 3 strengths
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["model"] for r in rows] == [str(DEFAULT_MODEL_DIR), "input (floor)"]
    model = rows[0]
    for key in ("style_distance", "input_style_distance", "edge_ssim", "warping_error_first_style",
                "warping_error_blend", "style_distance_vangogh"):
        assert math.isfinite(float(model[key])), key
    assert 0.0 < float(model["edge_ssim"]) <= 1.0
    assert float(rows[1]["warping_error_first_style"]) >= 0.0


# ---------------------------------------------------------------- student against teacher (--teacher)


@dataclass
class Distilled:
    root: Path  # generated training data plus the held-out photos and clip
    teacher: Path  # the inference copy, teacher.pt
    student: Path
    ablation: Path


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> Distilled:
    """A real tiny teacher (one step) and its distilled student and ablation twin (one step), on generated data."""
    from tests.traindata import make_data_root
    from train.distill import DistillConfig, train_distill
    from train.teacher import TeacherConfig, train_teacher

    tmp = tmp_path_factory.mktemp("distilled")
    root = make_data_root(tmp / "data")
    threads = torch.get_num_threads()  # the tiny presets pin one thread, process-wide
    ckpt = train_teacher(TeacherConfig.from_preset("teacher_tiny", [f'data="{root}"', f'out="{tmp / "t"}"',
                                                                    "steps=1"]))
    train_distill(DistillConfig.from_preset("distill_tiny", [f'data="{root}"', f'out="{tmp / "s"}"', "steps=1"]),
                  ckpt)
    torch.set_num_threads(threads)
    _held_out(root)
    return Distilled(root, ckpt.parent / "teacher.pt", tmp / "s" / "model", tmp / "s" / "ablation")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny nets on tiny images: a thread pool only costs (and starves on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Reordered:
    """A stylizer seen with its styles in another order (or a subset): weights are mapped back by index."""

    def __init__(self, model: Stylizer, order: list[int]) -> None:
        self.model, self.order = model, order
        self.style_names = tuple(model.style_names[i] for i in order)
        self.style_refs = [model.style_refs[i] for i in order]

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(len(weights), len(self.model.style_names))
        full[:, self.order] = weights
        return self.model(x, full, strength)


def test_style_map_matches_by_name() -> None:
    m = style_map(("a", "b"), ("b", "extra", "a"), "student")
    assert torch.equal(m, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="student lacks the teacher's style"):
        style_map(("a", "b"), ("a",), "student")


def test_fidelity_per_setting_and_the_teacher_against_itself(distilled: Distilled, one_thread: None) -> None:
    teacher, student = load_student_or_teacher(distilled.teacher), load_student_or_teacher(distilled.student)
    ref = Reference.build("teacher", teacher, [Image.fromarray(_texture(40, 56, seed=30))], size=32)
    itself = fidelity(teacher, "teacher", ref)
    assert list(itself.scores) == ["a", "b", "a+b", "a x0.25", "a x0.5", "a x0.75"]
    assert all(p == math.inf and abs(s - 1.0) < 1e-9 for p, s in itself.scores.values())
    assert itself.overall[0] == math.inf  # identical outputs: handled, not a crash or a NaN
    fid = fidelity(student, "student", ref)
    assert all(math.isfinite(p) and p > 0 and -1.0 <= s <= 1.0 for p, s in fid.scores.values())
    assert fid.overall[0] == pytest.approx(np.mean([fid.scores[k][0] for k in ("a", "b", "a+b")]))
    # Styles are matched by name, not position: a student listing them the other way round scores the same.
    flipped = fidelity(_Reordered(student, [1, 0]), "flipped", ref)
    for k, (p, s) in fid.scores.items():
        assert flipped.scores[k] == pytest.approx((p, s), rel=1e-5)
    with pytest.raises(ValueError, match="lacks the teacher's style"):
        fidelity(_Reordered(student, [0]), "one style", ref)


def test_eval_refuses_a_student_without_the_teacher_styles(distilled: Distilled, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from train.data import HELD_OUT_CLIP

    monkeypatch.setattr("train.evaluate.held_out_images", lambda: [("p", Image.fromarray(_texture(48, 64)))])
    clip = distilled.root / HELD_OUT_CLIP
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="lacks the teacher's style"):  # the bundled model has vangogh..., not a, b
        evaluate([str(DEFAULT_MODEL_DIR)], tmp_path, clip=clip, teacher=str(distilled.teacher))
    assert time.perf_counter() - t0 < 10  # refused before the slow work
    with pytest.raises(ValueError, match="--teacher"):
        evaluate([str(distilled.student)], tmp_path, clip=clip, speed=True)


def test_side_by_side_video_has_even_sizes_and_every_frame(tmp_path: Path) -> None:
    import av

    clip = [np.full((15, 21, 3), 40 * i, np.uint8) for i in range(3)]
    frames = side_by_side([(["input", "teacher: a", "model: a"], [clip, clip, clip]),
                           (["input", "teacher: a+b", "model: a+b"], [clip, clip, clip])])
    assert len(frames) == 6 and frames[0].shape == (LABEL_BAR + 16, 64, 3)  # 33 x 63, padded to even
    assert (frames[1][LABEL_BAR:, :63] == 40).all()
    codec = write_video(frames, Fraction(24000, 1001), tmp_path / "v.mp4")
    assert codec in ("libx264", "mpeg4")
    with av.open(str(tmp_path / "v.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name in ("h264", "mpeg4") and s.average_rate == Fraction(24000, 1001)
        decoded = list(c.decode(video=0))
    assert len(decoded) == 6 and (decoded[0].width, decoded[0].height) == (64, LABEL_BAR + 16)
    assert decoded[0].format.name == "yuv420p"


def test_time_interleaved_gives_the_fast_side_more_frames() -> None:
    calls = {"slow": 0, "fast": 0}

    def slow(_: np.ndarray) -> None:
        calls["slow"] += 1
        time.sleep(0.008)

    def fast(_: np.ndarray) -> None:
        calls["fast"] += 1
        time.sleep(0.001)

    ms_slow, ms_fast, k = time_interleaved(slow, fast, [np.zeros((2, 2, 3), np.uint8)], rounds=4)
    assert k >= 2 and ms_slow > 2 * ms_fast >= 2.0
    assert calls == {"slow": SPEED_WARMUP + 1 + 4, "fast": SPEED_WARMUP + 1 + 4 * k}  # warm-up, estimate, rounds


def test_eval_with_teacher_end_to_end(distilled: Distilled, tmp_path: Path) -> None:
    """`python -m train eval STUDENT ABLATION TEACHER --teacher TEACHER` on a fresh clone: no ../shared."""
    import av


    out = tmp_path / "eval"
    # One thread: a thread pool only costs on these tiny images (and starves on a busy machine).
    env = {**os.environ, "STYLIZER_DATA": str(distilled.root), "OMP_NUM_THREADS": "1"}
    teacher, student, ablation = str(distilled.teacher), str(distilled.student), str(distilled.ablation)
    cmd = [sys.executable, "-m", "train", "eval", student, ablation, teacher, "--teacher", teacher,
           "--out", str(out), "--size", "48", "--frames", "4", "--height", "48", "--speed-frames", "1", "--speed-threads", "1"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Fidelity to the teacher" in res.stdout and "Speed on the CPU at 640x360" in res.stdout
    rows = {r["model"]: r for r in csv.DictReader((out / "metrics.csv").open())}
    assert list(rows) == [teacher, student, ablation, "input (floor)"]  # the teacher heads the table, once
    assert rows[teacher]["fidelity_psnr_mean"] == ""  # the reference is not scored against itself
    assert rows[teacher]["runs_on"] == "torch eager FP32" and float(rows[teacher]["speedup_vs_teacher"]) == 1.0
    for label in (teacher, student, ablation):
        assert math.isfinite(float(rows[label]["warping_error_first_style"])), label
    for label in (student, ablation):
        r = rows[label]
        for s in ("a", "b", "a+b", "a x0.25", "a x0.5", "a x0.75"):
            assert math.isfinite(float(r[f"fidelity_psnr_{s}"])) and -1 <= float(r[f"fidelity_ssim_{s}"]) <= 1
        assert math.isfinite(float(r["fidelity_psnr_mean"]))
        assert r["runs_on"] in ("openvino-fp32", "openvino-int8", "onnx", "onnx-int8", "torch") and float(r["speedup_vs_teacher"]) > 0
        assert int(r["params"]) > 0 and int(r["macs_640x360"]) > 0
    md = (out / "metrics.md").read_text()
    for s in ("a", "b", "a+b", "a x0.25", "a x0.5", "a x0.75", "**mean, styles and blends**"):
        assert f"| {s} |" in md, s
    assert md.count("| torch eager FP32 |") == 2  # the teacher's row in each of the two timed pairs
    assert len(list(out.glob("sheet_*.png"))) == 3
    assert sorted(p.name for p in out.glob("side_by_side_*.mp4")) == sorted(
        f"side_by_side_{slug(x)}.mp4" for x in (student, ablation))
    with av.open(str(out / f"side_by_side_{slug(student)}.mp4")) as c:
        decoded = list(c.decode(video=0))
    assert len(decoded) == 2 * 4  # the first style, then the first blend
    assert (decoded[0].width, decoded[0].height) == (3 * 64, LABEL_BAR + 48)
