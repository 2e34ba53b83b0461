"""Generated training data for the teacher and distillation smoke runs (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _scene(rng: np.random.Generator, size: tuple[int, int], shift: int = 0) -> Image.Image:
    """A photo-like picture: a gradient sky, shapes with outlines; `shift` moves the shapes (a clip)."""
    w, h = size
    base = np.linspace(0, 1, h)[:, None, None] * rng.uniform(0.3, 1.0, 3) * 255
    img = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y, r = rng.integers(0, w), rng.integers(0, h), rng.integers(10, 40)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse((x - r + shift, y - r, x + r + shift, y + r), fill=colour, outline=(0, 0, 0), width=3)
    return img


def make_data_root(root: Path) -> Path:
    """content/kodak photos, two style references (a_stripes, b_noise) and a 4-frame moving sequence."""
    rng = np.random.default_rng(0)
    (root / "content" / "kodak").mkdir(parents=True)
    for i in range(4):
        _scene(rng, (160, 120)).save(root / "content" / "kodak" / f"photo{i}.jpg")
    (root / "styles").mkdir()
    stripes = np.zeros((128, 128, 3), np.uint8)
    stripes[:, ::8] = (250, 200, 40)
    Image.fromarray(stripes).save(root / "styles" / "a_stripes.png")
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(root / "styles" / "b_noise.png")
    seq = root / "video" / "headpose_male_webcam_frames"
    seq.mkdir(parents=True)
    for t in range(4):
        _scene(np.random.default_rng(7), (160, 120), shift=3 * t).save(seq / f"{t:04d}.jpg")
    return root
