"""Losses with known answers, style-weight sampling, and a smoke run of the perceptual trainer on generated data."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engines.artifact import load_artifact
from engines.features import ExpansionFeatures
from engines.style_losses import (
    PixelPools,
    colour_loss,
    content_loss,
    ground_weights,
    paper_mask,
    style_loss,
    style_stats,
    tv_loss,
)
from train.data import sample_style_weights
from train.face_crops import face_structure_loss
from train.perceptual import block_luma

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def features() -> ExpansionFeatures:
    return ExpansionFeatures()


def test_style_loss_zero_for_identical_statistics(features: ExpansionFeatures) -> None:
    img = torch.rand(3, 96, 128)
    stats = style_stats(features, [img, torch.rand(3, 96, 128)])
    w = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        f = features(img[None])
    assert style_loss(f, stats.mix(w)).item() < 1e-6
    assert colour_loss(img[None], stats.mix(w)).item() < 1e-8
    # The other style's statistics are clearly different.
    assert style_loss(f, stats.mix(torch.tensor([[0.0, 1.0]]))).item() > 1e-3


def test_mixture_targets_are_weighted_sums(features: ExpansionFeatures) -> None:
    stats = style_stats(features, [torch.rand(3, 64, 64), torch.zeros(3, 64, 64) + 0.5])
    mixed = stats.mix(torch.tensor([[0.25, 0.75]]))
    for k in stats.mu:
        assert torch.allclose(mixed.mu[k][0], 0.25 * stats.mu[k][0] + 0.75 * stats.mu[k][1], atol=1e-6)


def test_content_and_tv_losses_known_answers(features: ExpansionFeatures) -> None:
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        f = features(x)
    assert content_loss(f, f).item() == 0.0
    assert tv_loss(torch.full((1, 3, 16, 16), 0.3)).item() == 0.0
    # One vertical edge of height 1.0 over 16 rows: dx term = 16 / (16 * 15) per channel-mean.
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    assert abs(tv_loss(step).item() - 1 / 15) < 1e-6


def test_a_clip_art_colour_pool_leaves_its_paper_out() -> None:
    """Clip art on white paper: at share 0 its colour pool is the drawing's colours only (the paper is not a
    fill colour); at 0.1 the paper is a tenth of it; unweighted, almost half the pool is white. A reference with
    hardly any drawing keeps its pool."""
    art = torch.ones(3, 32, 32)
    art[:, :16] = torch.tensor([0.8, 0.3, 0.2])[:, None, None]  # a flat brick-red half, the rest paper
    art[:, 16:18] = 0.0  # an outline
    pools = PixelPools([[art], [art], [art]], (2,), grounds=(0.0, None, 0.1))
    white = lambda pool: float((pool >= 0.92).all(1).float().mean())  # noqa: E731
    assert white(pools.colour[0]) == 0.0 and len(pools.colour[0]) == 18 * 32
    assert white(pools.colour[1]) == pytest.approx(14 / 32)
    assert white(pools.colour[2]) == pytest.approx(0.1, abs=0.005)
    blank = torch.ones(3, 32, 32)
    blank[:, 0, :8] = 0.0  # 8 dark pixels: too few to be a palette
    assert len(PixelPools([[blank]], (2,), grounds=(0.0,)).colour[0]) == 32 * 32


def test_paper_is_the_white_joined_to_the_border_and_its_share_sets_the_statistics(features: ExpansionFeatures) -> None:
    """White inside an outline (a collar) is drawing, white round it is paper; at share 0 the style statistics
    are the drawing's own, as if the paper were not there."""
    art = torch.ones(3, 64, 64)
    art[:, 8:56, 8:56] = 0.0  # a black frame...
    art[:, 12:52, 12:52] = torch.tensor([0.2, 0.4, 0.9])[:, None, None]  # ...round a blue fill...
    art[:, 28:36, 28:36] = 1.0  # ...with a white collar inside
    paper = paper_mask(art)
    assert bool(paper[0, 0]) and bool(paper[4, 60]) and not bool(paper[30, 30]) and not bool(paper[20, 20])
    assert int(paper.sum()) == 64 * 64 - 48 * 48
    w = ground_weights(art, 0.0)
    assert w is not None and float(w[paper].max()) == 0.0 and float(w[~paper].min()) == 1.0
    assert ground_weights(art, 0.6) is None  # the paper (44%) is already under that share
    drawing = art[:, 8:56, 8:56]
    stats = style_stats(features, [art, art, drawing], [0.0, None, None])
    # The page moves the colour mean; at share 0 it is the drawing's (up to the tap's area pooling).
    assert torch.allclose(stats.rgb_mu[0], stats.rgb_mu[2], atol=1e-4)
    assert float((stats.rgb_mu[1] - stats.rgb_mu[2]).abs().max()) > 0.1


def test_the_face_term_reads_a_near_face_at_its_own_scale() -> None:
    """In blocks of 1/8 of a 128 px face (cells=8) the term leaves 4 px strokes free and still pays for 32 px
    blotches that move the face's light and dark; in fixed 4 px blocks the strokes cost as much as blotches."""
    ramp = torch.linspace(0.2, 0.8, 160).view(1, 1, 1, 160).expand(1, 3, 160, 160)
    mask = torch.zeros(1, 1, 160, 160)
    mask[:, :, 16:144, 16:144] = 1.0
    assert float(face_structure_loss(ramp, ramp, mask)) == 0.0 == float(face_structure_loss(ramp, ramp, mask, cells=8))
    yy, xx = torch.meshgrid(torch.arange(160), torch.arange(160), indexing="ij")

    def checker(side: int) -> torch.Tensor:
        return ramp + 0.3 * (((yy // side) + (xx // side)) % 2).float().view(1, 1, 160, 160) - 0.15

    strokes, blotches = checker(4), checker(32)
    assert float(face_structure_loss(strokes, ramp, mask)) > 0.5
    assert float(face_structure_loss(strokes, ramp, mask, cells=8)) < 0.05
    assert float(face_structure_loss(blotches, ramp, mask, cells=8)) > 0.5


def test_the_halfway_layout_is_blind_to_palette_and_strokes_not_to_blotches() -> None:
    """block_luma (the halfway term's reading): a new palette of the same luma and 4 px strokes leave the 16 px
    light and dark layout as it was; a 32 px blotch pattern does not."""
    x = torch.linspace(0.2, 0.8, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    recoloured = x + 0.1 * torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1)  # luma-neutral
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")

    def checker(side: int) -> torch.Tensor:
        return x + 0.2 * ((((yy // side) + (xx // side)) % 2).float() - 0.5).view(1, 1, 64, 64)

    base = block_luma(x)
    assert base.shape == (1, 1, 4, 4)
    assert float((block_luma(recoloured) - base).abs().max()) < 1e-6
    assert float((block_luma(checker(4)) - base).abs().max()) < 1e-6
    assert float((block_luma(checker(32)) - base).abs().mean()) > 0.09


def test_the_line_terms_charge_ink_and_marks_off_the_photos_edges_only() -> None:
    """A flat wall with one dark bar (the photo's only edge): ink or marks on the bar are free; a blob of ink on
    the bare wall costs both terms; a flat fill costs neither; a sample that is no line style costs nothing."""
    from train.line_losses import ink_off_edges, marks_off_edges

    photo = torch.full((1, 3, 64, 64), 0.8)
    photo[:, :, :, 30:34] = 0.1
    on_edge = photo.clone()  # the photo's own bar, inked: marks and ink only where the photo has its edge
    blob = torch.full((1, 3, 64, 64), 0.9)
    blob[:, :, 8:16, 8:16] = 0.0  # a blob of ink on the wall, far from the bar
    flat = torch.full((1, 3, 64, 64), 0.9)
    one = torch.ones(1)
    assert marks_off_edges(flat, photo, one) == 0 and ink_off_edges(flat, photo, one, 0.7) == 0
    assert marks_off_edges(on_edge, photo, one) < 0.1 * marks_off_edges(blob, photo, one)
    assert ink_off_edges(blob, photo, one, 0.7) > 0.01
    assert marks_off_edges(blob, photo, torch.zeros(1)) == 0


def test_style_weight_sampling() -> None:
    w = sample_style_weights(200, 5, random.Random(0))
    assert torch.allclose(w.sum(1), torch.ones(200))
    onehot = (w.max(1).values == 1.0).float().mean().item()
    assert 0.3 < onehot < 0.7  # about half one-hot, half mixtures
    assert ((w > 0).sum(1) <= 3).all()


def _fake_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "styles").mkdir(parents=True)
    (root / "content" / "kodak").mkdir(parents=True)
    for name, freq in (("stripes", 7.0), ("blobs", 31.0)):
        y, x = np.mgrid[0:128, 0:128]
        img = np.stack([np.sin(x / freq) * 120 + 128, np.cos(y / freq) * 120 + 128, (x + y) % 256], -1)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "styles" / f"{name}_test.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / "content" / "kodak" / f"c{i}.png")


def test_perceptual_training_smoke(tmp_path: Path) -> None:
    from train.perceptual import PerceptualConfig, train_perceptual

    _fake_data(tmp_path / "data")
    cfg = PerceptualConfig(styles=["stripes", "blobs"], out=str(tmp_path / "run"), steps=2, batch=2, crop=64,
                           style_short_side=64, save_every=1, data=str(tmp_path / "data"), threads=1)
    model = train_perceptual(cfg)
    art = load_artifact(model)
    assert art.contract.style_names == ("stripes", "blobs")
    assert art.meta["provenance"]["steps_done"] == 2
    assert art.onnx_path.is_file() and (model / "thumbs" / "stripes.jpg").is_file()
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 3


def test_perceptual_training_with_the_face_terms(tmp_path: Path) -> None:
    """The face crop, the softened cascade and the per-source draw run on real portraits and log the cascade."""
    import csv
    import shutil

    from train.perceptual import PerceptualConfig, train_perceptual

    _fake_data(tmp_path / "data")
    photos = Path(__file__).parent / "look" / "photos"
    for name in ("kodim04.jpg", "headpose_female_0010.jpg"):
        shutil.copy(photos / name, tmp_path / "data" / "content" / "kodak" / name)
    cfg = PerceptualConfig(styles=["stripes", "blobs"], out=str(tmp_path / "run"), steps=3, batch=1, crop=128,
                           style_short_side=64, save_every=3, data=str(tmp_path / "data"), threads=1,
                           face_weight=10.0, face_fill=[0.45, 0.6], face_strengths=[0.5, 1.0], cascade_weight=2.0,
                           face_style_odds=["blobs=3"], face_by_source=True)
    train_perceptual(cfg)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert len(rows) == 3
    # A painter fresh from its initialisation reads as no face to the cascade: the term is live.
    assert all(float(r["cascade"]) > 0 for r in rows), [r["cascade"] for r in rows]
    with pytest.raises(ValueError, match="--face-weight"):
        train_perceptual(PerceptualConfig(styles=["stripes"], out=str(tmp_path / "bad"), steps=1,
                                          data=str(tmp_path / "data"), cascade_weight=1.0))


def test_the_halfway_term_on_faces_only_reads_the_face_crop_alone(tmp_path: Path) -> None:
    """With the face crop at full strength, a faces-only halfway term has nothing to hold; over the batch it does."""
    import csv
    import shutil

    from train.perceptual import PerceptualConfig, train_perceptual

    _fake_data(tmp_path / "data")
    for name in ("kodim04.jpg", "headpose_female_0010.jpg"):
        shutil.copy(Path(__file__).parent / "look" / "photos" / name, tmp_path / "data" / "content" / "kodak" / name)
    logged = {}
    for only in (True, False):
        cfg = PerceptualConfig(styles=["stripes", "blobs"], out=str(tmp_path / f"run{only}"), steps=3, batch=2,
                               crop=96, style_short_side=64, save_every=3, data=str(tmp_path / "data"), threads=1,
                               face_weight=10.0, face_fill=[0.45, 0.6], face_strengths=[1.0, 1.0], halfway_weight=100.0,
                               halfway_faces_only=only, strength_full=0.0, strength_zero=0.0, strength_gamma=0.6)
        train_perceptual(cfg)
        logged[only] = [float(r["halfway"]) for r in csv.DictReader((tmp_path / f"run{only}" / "log.csv").open())]
    assert logged[True] == [0.0, 0.0, 0.0]
    assert all(v > 0 for v in logged[False]), logged
    with pytest.raises(ValueError, match="--halfway-faces-only"):
        train_perceptual(PerceptualConfig(styles=["stripes"], out=str(tmp_path / "bad"), steps=1,
                                          data=str(tmp_path / "data"), halfway_weight=1.0, halfway_faces_only=True))


def test_the_teacher_term_is_zero_against_itself_and_live_for_a_shrunk_student(tmp_path: Path) -> None:
    """A student started from its own teacher matches it before the first step; one shrunk from it does not."""
    import csv

    from train.perceptual import PerceptualConfig, train_perceptual

    _fake_data(tmp_path / "data")
    base = dict(styles=["stripes", "blobs"], steps=2, batch=2, crop=64, style_short_side=64, save_every=2,
                data=str(tmp_path / "data"), threads=1)
    teacher = train_perceptual(PerceptualConfig(out=str(tmp_path / "teacher"), **base))
    logged = {}
    for blocks, half_blocks in ((6, 2), (2, 1)):  # the teacher's own layout, then a shallower one
        out = tmp_path / f"student{blocks}"
        model = train_perceptual(PerceptualConfig(out=str(out), init=str(teacher), teacher=str(teacher),
                                                  teacher_weight=10.0, blocks=blocks, half_blocks=half_blocks, **base))
        assert load_artifact(model).config.blocks == blocks
        logged[blocks] = [float(r["teacher"]) for r in csv.DictReader((out / "log.csv").open())]
    assert logged[6][0] < 1e-6 < logged[6][1]  # the same net until its first step, then its own
    assert logged[2][0] > 1e-4, logged
    with pytest.raises(ValueError, match="--teacher and --teacher-weight"):
        train_perceptual(PerceptualConfig(out=str(tmp_path / "bad"), teacher=str(teacher), **base))


def test_the_drawn_targets_reach_full_strength_one_hot_rows_of_their_style_only(tmp_path: Path) -> None:
    import csv

    from train.perceptual import PerceptualConfig, train_perceptual

    _fake_data(tmp_path / "data")
    base = dict(styles=["stripes", "blobs"], steps=2, batch=2, crop=64, style_short_side=64, save_every=2,
                data=str(tmp_path / "data"), threads=1, p_onehot=1.0, toon_weight=10.0)
    logged = {}
    for name, extra in (("guided", dict(strength_full=1.0, style_odds=["blobs=0.001"])),  # stripes, full strength
                        ("halfway", dict(strength_full=0.0, strength_zero=0.0)),  # never full strength
                        ("other", dict(strength_full=1.0, toon=["absent=cel"]))):
        cfg = PerceptualConfig(out=str(tmp_path / name), toon=extra.pop("toon", ["stripes=cel"]), **extra, **base)
        train_perceptual(cfg)
        logged[name] = [float(r["toon"]) for r in csv.DictReader((tmp_path / name / "log.csv").open())]
    assert min(logged["guided"]) > 0.01, logged
    assert logged["halfway"] == logged["other"] == [0.0, 0.0], logged


def test_clips_decode_the_same_without_pyav(tmp_path: Path) -> None:
    # A bare GPU machine has OpenCV but no PyAV: clip_frames falls back to OpenCV's FFmpeg there.
    import av

    from train.data import _clip_frames_cv2, clip_frames

    path = tmp_path / "moving.mp4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)  # 128x128 blocks
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for t in range(12):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * t, axis=1), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    a, b = clip_frames(path, every=3), _clip_frames_cv2(path, every=3)
    assert len(a) == len(b) == 4
    for fa, fb in zip(a, b):
        assert fa.size == fb.size == (128, 128)
        assert np.abs(np.asarray(fa, np.float32) - np.asarray(fb, np.float32)).mean() < 3.0
    with pytest.raises(FileNotFoundError, match="cannot decode"):
        _clip_frames_cv2(tmp_path / "missing.mp4", every=1)
