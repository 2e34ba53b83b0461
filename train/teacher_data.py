"""Batches for the GAN teacher: content crops, real clip pairs with flow, reference patches.

One `TeacherBatches` stream runs inside DataLoader workers, so JPEG decoding, resizing and the
DIS optical flow of clip pairs overlap with the training step. Every worker (and DDP rank)
seeds its own RNG from (seed, rank, worker), so runs repeat exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train.data import (
    HELD_OUT,
    HELD_OUT_CLIP,
    IMAGE_EXT,
    PERMISSIVE_CLIPS,
    CropSampler,
    clip_frames,
    content_images,
    load_rgb,
    to_tensor,
)
from train.flow import flow, occlusion_mask

# Frame folders that are consecutive frames of one shot (usable as clips for the temporal loss).
FRAME_SEQUENCES = (
    "video/headpose_male_webcam_frames",
    "video/headpose_female_webcam_frames",
    "video/people_walking_toward_camera_frames",
    "video/parking_lot_person_bicycle_car_frames",
)


@dataclass
class DataSpec:
    """What a worker needs to build batches (plain data, so it pickles into worker processes)."""

    root: str
    style_refs: list[list[str]]  # per style, its reference image paths
    crop: int = 192
    content_batch: int = 2
    real_batch: int = 4
    clip_pairs: bool = True
    style_short: tuple[int, int] = (300, 520)
    allow_noncommercial: bool = False
    seed: int = 0
    rank: int = 0


def clip_sequences(root: Path, short_side: int = 360) -> list[list[Image.Image]]:
    """Consecutive frames of the permissive clips and frame folders (held-out frames left out)."""
    seqs: list[list[Image.Image]] = []
    for folder in FRAME_SEQUENCES:
        d = root / folder
        if d.is_dir():
            paths = [p for p in sorted(d.iterdir())
                     if p.suffix.lower() in IMAGE_EXT and f"{folder}/{p.name}" not in HELD_OUT]
            seqs.append([load_rgb(p, short_side) for p in paths])
    for clip in PERMISSIVE_CLIPS:
        p = root / clip
        if p.is_file() and clip != HELD_OUT_CLIP:
            frames = clip_frames(p, every=2)  # 2 frames apart at 25-30 fps: motion like a 15 fps webcam
            seqs.append([im.resize((round(im.width * short_side / im.height), short_side), Image.BILINEAR)
                         for im in frames])
    return [s for s in seqs if len(s) >= 2]


class TeacherBatches(torch.utils.data.IterableDataset):
    """An endless stream of dicts:
    content (Nc,3,C,C); pair (2,3,C,C) frames t-1, t; pair_flow (1,2,C,C) = flow(I_t, I_t-1);
    pair_mask (1,1,C,C); real (Nr,3,C,C) reference patches; real_style (Nr,) style indices.
    """

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.spec = spec

    def _rng(self) -> random.Random:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        return random.Random(hash((self.spec.seed, self.spec.rank, worker)) & 0xFFFFFFFF)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        spec, rng = self.spec, self._rng()
        root = Path(spec.root)
        content = [im for _, im in content_images(root, allow_noncommercial=spec.allow_noncommercial)]
        sampler = CropSampler(content, crop=spec.crop, seed=rng.randrange(2**31))
        seqs = clip_sequences(root) if spec.clip_pairs else []
        refs = [[load_rgb(p, spec.style_short[1]) for p in paths] for paths in spec.style_refs]
        while True:
            batch = {"content": sampler.sample(spec.content_batch)}
            if seqs:
                batch.update(self._pair(rng, seqs))
            styles = [rng.randrange(len(refs)) for _ in range(spec.real_batch)]
            batch["real"] = torch.stack([self._patch(rng, rng.choice(refs[s])) for s in styles])
            batch["real_style"] = torch.tensor(styles)
            yield batch

    def _patch(self, rng: random.Random, img: Image.Image) -> torch.Tensor:
        return reference_patch(rng, img, self.spec.crop, self.spec.style_short)

    def _pair(self, rng: random.Random, seqs: list[list[Image.Image]]) -> dict[str, torch.Tensor]:
        return clip_pair(rng, seqs, self.spec.crop)


def reference_patch(rng: random.Random, img: Image.Image, crop: int, short_range: tuple[int, int]) -> torch.Tensor:
    """A random crop of a reference resized to a random short side in `short_range`, flipped half the time:
    a real sample for the critic."""
    c = crop
    short = rng.randint(max(short_range[0], c + 1), max(short_range[1], c + 1))
    scale = short / min(img.size)
    im = img.resize((max(c, round(img.width * scale)), max(c, round(img.height * scale))), Image.BILINEAR)
    x, y = rng.randint(0, im.width - c), rng.randint(0, im.height - c)
    im = im.crop((x, y, x + c, y + c))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(im)


def clip_pair(rng: random.Random, seqs: list[list[Image.Image]], crop: int) -> dict[str, torch.Tensor]:
    """Two consecutive frames cropped alike, with DIS flow and the occlusion mask computed on the crops:
    pair (2,3,C,C) frames t-1, t; pair_flow (1,2,C,C) = flow(I_t, I_t-1); pair_mask (1,1,C,C)."""
    c = crop
    seq = rng.choice(seqs)
    t = rng.randrange(1, len(seq))
    a, b = seq[t - 1], seq[t]
    short = rng.randint(max(c, 240), max(c, 360))
    scale = short / min(a.size)
    size = (max(c, round(a.width * scale)), max(c, round(a.height * scale)))
    x, y = rng.randint(0, size[0] - c), rng.randint(0, size[1] - c)
    flip = rng.random() < 0.5
    crops = []
    for im in (a, b):
        im = im.resize(size, Image.BILINEAR).crop((x, y, x + c, y + c))
        crops.append(np.asarray(im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im))
    prev, nxt = crops
    fwd, bwd = flow(nxt, prev), flow(prev, nxt)
    mask = occlusion_mask(fwd, bwd)
    return {
        "pair": torch.stack([torch.from_numpy(f.astype(np.float32) / 255.0).permute(2, 0, 1) for f in crops]),
        "pair_flow": torch.from_numpy(fwd).permute(2, 0, 1)[None].contiguous(),
        "pair_mask": torch.from_numpy(mask)[None, None],
    }
