"""Training data: permissively licensed content photos and frames, style references.

`content/bsds500` is non-commercial, so it is never used for a shipped model
unless asked for explicitly (`allow_noncommercial`).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED_DATA = Path(os.environ.get("STYLIZER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Folders under the data root whose licences allow a shipped model (see shared/data/SOURCES.md).
PERMISSIVE_CONTENT = (
    "content/kodak",
    "content/cc_by_video_frames",
    "video/headpose_male_webcam_frames",
    "video/headpose_female_webcam_frames",
    "video/people_walking_toward_camera_frames",
    "video/parking_lot_person_bicycle_car_frames",
)
PERMISSIVE_CLIPS = (
    "video/asl_book_webcam_woman.mp4",
    "video/asl_sister_webcam_man.mp4",
    "video/squirrel_pexels_5s.mp4",
    "video/indoor_person_walk_static_8s.mp4",
)
NONCOMMERCIAL_CONTENT = ("content/bsds500",)
# Held out of training, used for contact sheets and evaluation.
HELD_OUT = (
    "content/kodak/kodim04.jpg",
    "content/kodak/kodim15.jpg",
    "content/kodak/kodim23.jpg",
    "content/cc_by_video_frames/tears_of_steel_f040.jpg",
    "content/cc_by_video_frames/intel_asl_eat_f023.jpg",
    "video/headpose_female_webcam_frames/0010.jpg",
)
HELD_OUT_CLIP = "video/tos_lab_faces_5s.mp4"
# The look measure's photos (train/look.py): the held-out set plus four BSDS500 photos. BSDS500 is never
# trained on (non-commercial), so judging on it is fine and it widens the subjects: animals, buildings, people.
LOOK_PHOTOS = HELD_OUT + (
    "content/bsds500/train_100075.jpg",
    "content/bsds500/train_135069.jpg",
    "content/bsds500/train_176035.jpg",
    "content/bsds500/train_24063.jpg",
)
# Portraits no model trains on: faces must survive the style (Haar-cascade rate against the input). The first
# four are held out of training (the cascade misses kodim15's face in the input, so it counts nothing); on
# those three alone one borderline face (kodim04) moved the rate by 1/3. The BSDS500 ones (scored on, never
# shown: non-commercial) are nine of its photos where the cascade finds a person's face, picked by eye (its
# false hits on animals, statues and pots, and faces under 40 px, left out).
LOOK_PORTRAITS = (
    "content/kodak/kodim04.jpg",
    "content/kodak/kodim15.jpg",
    "content/cc_by_video_frames/intel_asl_eat_f023.jpg",
    "video/headpose_female_webcam_frames/0010.jpg",
    "content/bsds500/train_122048.jpg",
    "content/bsds500/train_189003.jpg",
    "content/bsds500/train_189011.jpg",
    "content/bsds500/train_285036.jpg",
    "content/bsds500/train_323016.jpg",
    "content/bsds500/train_376001.jpg",
    "content/bsds500/train_376020.jpg",
    "content/bsds500/val_189080.jpg",
    "content/bsds500/val_376043.jpg",
)
IMAGE_EXT = {".jpg", ".jpeg", ".png"}


def load_rgb(path: str | Path, short_side: int | None = None, max_long: int | None = None) -> Image.Image:
    img = Image.open(path).convert("RGB")
    if short_side is not None:
        scale = short_side / min(img.size)
        if max_long is not None:
            scale = min(scale, max_long / max(img.size))
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1).contiguous()


def clip_frames(path: str | Path, every: int = 3) -> list[Image.Image]:
    """Every `every`-th frame of a video file. PyAV decodes it; where PyAV is not installed (a bare GPU
    machine with only this checkout on it), OpenCV's own FFmpeg does."""
    try:
        import av
    except ImportError:
        return _clip_frames_cv2(path, every)
    frames = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                frames.append(f.to_image())
    return frames


def _clip_frames_cv2(path: str | Path, every: int) -> list[Image.Image]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot decode {path} (no PyAV, and OpenCV could not open it)")
    frames, i = [], 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % every == 0:
                frames.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            i += 1
    finally:
        cap.release()
    return frames


def content_images(root: Path = SHARED_DATA, *, allow_noncommercial: bool = False, clip_every: int = 3) -> list[tuple[str, Image.Image]]:
    """All training content as (name, image), held-out files excluded."""
    folders = PERMISSIVE_CONTENT + (NONCOMMERCIAL_CONTENT if allow_noncommercial else ())
    out: list[tuple[str, Image.Image]] = []
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            rel = f"{folder}/{p.name}"
            if p.suffix.lower() in IMAGE_EXT and rel not in HELD_OUT:
                out.append((rel, Image.open(p).convert("RGB")))
    for clip in PERMISSIVE_CLIPS:
        p = root / clip
        if p.is_file():
            out.extend((f"{clip}#{i}", im) for i, im in enumerate(clip_frames(p, clip_every)))
    if not out:
        raise FileNotFoundError(f"no content images under {root}; set STYLIZER_DATA to the shared data folder")
    return out


def held_out_images(root: Path = SHARED_DATA) -> list[tuple[str, Image.Image]]:
    return [(rel, Image.open(root / rel).convert("RGB")) for rel in HELD_OUT if (root / rel).is_file()]


def resolve_style(spec: str, root: Path = SHARED_DATA) -> tuple[str, Path]:
    """A style as NAME=PATH, a path, or a file-name prefix in the styles folder -> (name, path).

    The name defaults to the first word of the file name ("vangogh_starry_night" -> "vangogh").
    """
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = Path(path)
    if not p.is_file():
        matches = sorted((root / "styles").glob(f"{path}*"))
        if not matches:
            raise FileNotFoundError(f"style {spec!r}: not a file, and no match in {root / 'styles'}")
        p = matches[0]
    return (name or p.stem.split("_")[0]), p


@dataclass
class CropSampler:
    """Random crops of content images at a scale similar to a 360p webcam frame."""

    images: list[Image.Image]
    crop: int = 224
    short_min: int = 300
    short_max: int = 420
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def sample(self, batch: int) -> torch.Tensor:
        out = []
        for _ in range(batch):
            img = self.rng.choice(self.images)
            short = self.rng.randint(self.short_min, self.short_max)
            scale = max(short / min(img.size), (self.crop + 1) / min(img.size))
            w, h = max(self.crop, round(img.width * scale)), max(self.crop, round(img.height * scale))
            im = img.resize((w, h), Image.BILINEAR)
            x, y = self.rng.randint(0, w - self.crop), self.rng.randint(0, h - self.crop)
            im = im.crop((x, y, x + self.crop, y + self.crop))
            if self.rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(to_tensor(im))
        return torch.stack(out)


def sample_style_weights(batch: int, num_styles: int, rng: random.Random, p_onehot: float = 0.5,
                         max_mix: int = 3, alpha: float = 0.7, odds: list[float] | None = None) -> torch.Tensor:
    """One-hot styles and random Dirichlet mixtures of 2..max_mix styles: (batch, S), rows sum to 1.

    `odds` (S,) weighs which style a one-hot row draws (default: all alike)."""
    w = torch.zeros(batch, num_styles)
    for i in range(batch):
        if num_styles == 1 or rng.random() < p_onehot:
            w[i, rng.choices(range(num_styles), weights=odds)[0] if odds else rng.randrange(num_styles)] = 1.0
        else:
            k = rng.randint(2, min(max_mix, num_styles))
            idx = rng.sample(range(num_styles), k)
            g = np.random.default_rng(rng.randrange(2**31)).dirichlet([alpha] * k)
            w[i, idx] = torch.tensor(g, dtype=torch.float32)
    return w


def source_refs(source: str | list[str] | None, name: str, root: Path = SHARED_DATA) -> list[Path]:
    """A style's source as model.json records it (a file name, or a list of them for a fused style) in the
    data root's styles folder, unchecked, so a model loads without the data; without one, the style's name
    as a file-name prefix there."""
    if source is None:
        return [resolve_style(name, root)[1]]
    return [root / "styles" / s for s in ([source] if isinstance(source, str) else source)]
