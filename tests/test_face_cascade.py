"""The softened Haar cascade (train/face_cascade.py) against OpenCV's own, on committed portraits."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.data import to_tensor
from train.face_cascade import SoftCascade, face_windows, mask_box
from train.look import face_boxes

pytestmark = pytest.mark.unit

PHOTOS = Path(__file__).parent / "look" / "photos"
PORTRAITS = ("kodim04.jpg", "headpose_female_0010.jpg")


@pytest.fixture(scope="module")
def cascade() -> SoftCascade:
    return SoftCascade()


def _portrait(name: str) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    im = Image.open(PHOTOS / name).convert("RGB")
    boxes = face_boxes(np.asarray(im))
    assert len(boxes) == 1, f"{name}: OpenCV's cascade should find exactly one face, found {boxes}"
    return to_tensor(im)[None], boxes[0]


@pytest.mark.parametrize("name", PORTRAITS)
def test_hard_cascade_passes_where_opencv_finds_the_face(cascade: SoftCascade, name: str) -> None:
    x, box = _portrait(name)
    on_face = cascade.passes(face_windows(x, box, 12, random.Random(0)))
    # OpenCV reports a face where several neighbouring windows pass; this copy must agree on most of them.
    assert on_face.float().mean() >= 0.5
    rng = random.Random(1)
    height, width = x.shape[-2:]
    off = []
    for _ in range(200):
        side = rng.randint(30, min(height, width) // 2)
        off.append(face_windows(x, (rng.randint(0, width - side), rng.randint(0, height - side), side, side), 1, rng))
    # Random windows of the same photo (the face among them now and then) almost never pass all 25 stages.
    assert cascade.passes(torch.cat(off)).float().mean() <= 0.02


@pytest.mark.parametrize("name", PORTRAITS)
def test_loss_is_zero_for_the_photo_and_large_for_its_negative(cascade: SoftCascade, name: str) -> None:
    x, box = _portrait(name)
    wins = face_windows(torch.cat([x, 1.0 - x]), box, 8, random.Random(0))
    same, negative = cascade.loss(wins[:8], wins[:8]), cascade.loss(wins[8:], wins[:8])
    assert float(same) == 0.0
    # A negative keeps every edge and flips every light and dark: the cascade reads no face in it.
    assert float(negative) > 50.0
    assert not cascade.passes(wins[8:]).any()


def test_descending_the_loss_brings_a_face_back(cascade: SoftCascade) -> None:
    x, box = _portrait("headpose_female_0010.jpg")
    rng = random.Random(0)
    src = face_windows(x, box, 6, rng)
    out = (255.0 - src).clone().requires_grad_(True)  # start from the negative
    opt = torch.optim.Adam([out], lr=4.0)
    first = cascade.loss(out, src).item()
    for _ in range(60):
        opt.zero_grad()
        cascade.loss(out, src).backward()
        opt.step()
        with torch.no_grad():
            out.clamp_(0, 255)
    assert cascade.loss(out, src).item() < 0.2 * first
    assert cascade.passes(out.detach()).float().mean() >= 0.5


def test_mask_box_skips_faces_cut_by_the_crop() -> None:
    mask = torch.zeros(1, 100, 100)
    mask[:, 10:60, 20:70] = 1
    assert mask_box(mask) == (20, 10, 50, 50)
    mask[:, :, 30:] = 0  # a 10 px sliver is left
    assert mask_box(mask) is None
    assert mask_box(torch.zeros(1, 50, 50)) is None
