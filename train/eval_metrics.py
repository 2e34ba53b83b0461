"""`python -m train eval`, the measures: loading a student or a teacher as a Stylizer, the contact sheet, the
photo and clip metrics (style distance, edge SSIM, warping error) and fidelity to the teacher.

train/evaluate.py runs the command; eval_speed.py times the CPU speed pair; eval_report.py writes tables and videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from engines.artifact import META_FILE
from engines.contract import padded_size
from engines.features import ExpansionFeatures
from engines.style_losses import pooled_style_stats
from train.data import load_rgb, source_refs, to_tensor
from train.metrics import edge_ssim, psnr, ssim, style_distances
from train.sheet import fit_height

STRENGTHS = (0.25, 0.5, 0.75)  # partial strengths of the first style on the sheet
CLIP_BATCH = 8



class Stylizer(Protocol):
    """Anything evaluate can judge: a student artifact, or a teacher checkpoint (train.teacher_checkpoint.load_teacher)."""

    style_names: tuple[str, ...]
    style_refs: list[list[Path]]  # each style's reference images; a fused style has several

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """x (N,3,H,W) in [0,1] on the CPU, weights (N,S), strength (N,1) -> (N,3,H,W) in [0,1], under no_grad.
        The result may live on the stylizer's device."""
        ...


class StudentStylizer:
    """A student artifact folder on the PyTorch reference back-end."""

    def __init__(self, path: Path) -> None:
        from engines.loader import load_backend

        self.backend = load_backend(path, "torch")
        self.style_names = self.backend.style_names
        sources = self.backend.artifact.meta.get("provenance", {}).get("styles", {})
        self.style_refs = [source_refs(sources.get(n), n) for n in self.style_names]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        hp, wp = padded_size(h, w, self.backend.contract.size_multiple)
        xp = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")  # edge padding, as the back-ends pad frames
        sv = strength.float().contiguous().numpy()
        film = self.backend.styles.mix(weights.float().contiguous().numpy(), sv)  # the graph takes mixed FiLM rows
        y = self.backend.run(xp.float().contiguous().numpy(), film, sv)
        return torch.from_numpy(y)[..., :h, :w]


def load_student_or_teacher(path: str | Path) -> Stylizer:
    """A model folder (model.json) -> the student; a .pt/.ckpt file -> the GAN teacher."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return StudentStylizer(p)
    if p.is_file() and p.suffix in (".pt", ".ckpt"):
        from train.teacher_checkpoint import load_teacher  # imported here: students need no teacher code

        return load_teacher(p)
    raise ValueError(f"{p}: neither a model folder with {META_FILE} nor a .pt/.ckpt teacher checkpoint")


def short_side(img: Image.Image, size: int) -> Image.Image:
    scale = size / min(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def read_clip(path: Path, frames: int, size: int) -> list[np.ndarray]:
    """The first `frames` frames as RGB uint8, resized to `size` on the short side."""
    import av

    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if len(out) == frames:
                break
            out.append(np.asarray(short_side(f.to_image(), size)))
    return out


def run_stylizer(model: Stylizer, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x, weights, strength).float().cpu().clamp(0.0, 1.0)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) in [0,1] -> (N,H,W,3) uint8, rounded."""
    return (y.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def sheet_columns(names: Sequence[str]) -> list[tuple[str, torch.Tensor, float]]:
    """(label, style weights, strength): each style, two 50/50 blends of neighbours, the first style part-strength."""
    eye = torch.eye(len(names))
    cols = [(n, eye[i], 1.0) for i, n in enumerate(names)]
    cols += [(f"{names[i]}+{names[i + 1]}", (eye[i] + eye[i + 1]) / 2, 1.0) for i in range(min(2, len(names) - 1))]
    cols += [(f"{names[0]} x{s:g}", eye[0], s) for s in STRENGTHS]
    return cols


def contact_sheet(model: Stylizer, photos: list[Image.Image], title: str, height: int, out: Path) -> Path:
    """Rows: photos fitted to `height`; columns: the input and `sheet_columns`, labelled."""
    cols = sheet_columns(model.style_names)
    weights = torch.stack([w for _, w, _ in cols])
    strength = torch.tensor([[s] for _, _, s in cols])
    rows = []
    for img in tqdm(photos, desc=f"sheet {title}", dynamic_ncols=True, leave=False):
        im = fit_height(img, height)
        y = run_stylizer(model, to_tensor(im)[None].expand(len(cols), -1, -1, -1), weights, strength)
        rows.append([im] + [Image.fromarray(a) for a in to_uint8(y)])
    font = ImageFont.load_default(size=14)
    col_w, head = max(max(t.width for t in r) for r in rows), 44
    sheet = Image.new("RGB", (col_w * (len(cols) + 1), head + sum(r[0].height for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill="black", font=font)
    for j, label in enumerate(["input"] + [c for c, _, _ in cols]):
        draw.text((j * col_w + 4, 24), label, fill="black", font=font)
    top = head
    for r in rows:
        for j, t in enumerate(r):
            sheet.paste(t, (j * col_w + (col_w - t.width) // 2, top))
        top += r[0].height
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


@dataclass
class ModelResult:
    label: str
    style_names: tuple[str, ...]
    style_distance: dict[str, float]  # per style, mean over photos
    edge_per_style: dict[str, float]  # per style, mean over photos
    input_style_distance: float  # the unstylized photos' mean distance to the same styles
    warp_first: float
    warp_blend: float | None  # None for a one-style model

    @property
    def mean_style_distance(self) -> float:
        return float(np.mean(list(self.style_distance.values())))

    @property
    def edge_ssim(self) -> float:
        """Mean over photos and styles."""
        return float(np.mean(list(self.edge_per_style.values())))

    def on(self, styles: Sequence[str]) -> tuple[float, float]:
        """(style distance, edge SSIM), each the mean over `styles` only."""
        return (float(np.mean([self.style_distance[s] for s in styles])),
                float(np.mean([self.edge_per_style[s] for s in styles])))


def photo_metrics(model: Stylizer, features: ExpansionFeatures, photos: list[Image.Image],
                   size: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Per-style distance and edge SSIM (each the mean over photos), one-hot at strength 1, and the
    unstylized photos' own mean distance to the styles: the starting point the model moved from."""
    refs = [[to_tensor(load_rgb(p, size, max_long=2 * size)) for p in paths] for paths in model.style_refs]
    stats = pooled_style_stats(features, refs)
    n = len(model.style_names)
    eye = torch.eye(n)
    targets = stats.mix(eye)  # row i: style i
    dist, before, edges = np.zeros(n), np.zeros(n), np.zeros(n)
    for img in tqdm(photos, desc="photo metrics", dynamic_ncols=True, leave=False):
        x = to_tensor(short_side(img, size))[None]
        y = run_stylizer(model, x.expand(n, -1, -1, -1), eye, torch.ones(n, 1))
        dist += style_distances(features, y, targets)
        before += style_distances(features, x, targets)
        edges += [edge_ssim(x, y[i : i + 1]) for i in range(n)]
    k = len(photos)
    return (dict(zip(model.style_names, (dist / k).tolist())), dict(zip(model.style_names, (edges / k).tolist())),
            float(before.mean() / k))


def clip_rate(path: Path) -> Fraction:
    """The clip's frame rate, kept to a denominator every encoder takes (MPEG-4 needs under 2^16)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return Fraction(s.average_rate or s.guessed_rate or 25).limit_denominator(1001)


def _clip_outputs(model: Stylizer, frames: list[np.ndarray], weights: torch.Tensor) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in tqdm(range(0, len(frames), CLIP_BATCH), desc="clip", dynamic_ncols=True, leave=False):
        chunk = frames[i : i + CLIP_BATCH]
        x = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).float() / 255.0
        out.extend(to_uint8(run_stylizer(model, x, weights.expand(len(chunk), -1), torch.ones(len(chunk), 1))))
    return out


class ClipRuns:
    """Stylized clips by (model, style weights), so the warping error and the side-by-side video share a run."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self._runs: dict[tuple[str, tuple[float, ...]], list[np.ndarray]] = {}

    def __call__(self, label: str, model: Stylizer, weights: torch.Tensor) -> list[np.ndarray]:
        key = (label, tuple(weights.tolist()))
        if key not in self._runs:
            self._runs[key] = _clip_outputs(model, self.frames, weights)
        return self._runs[key]

    def drop(self, label: str) -> None:
        """Forget a model's runs once they are used: a long clip at full size is large."""
        self._runs = {k: v for k, v in self._runs.items() if k[0] != label}


# ---------------------------------------------------------------- fidelity to the teacher


def style_map(reference: Sequence[str], model: Sequence[str], label: str) -> torch.Tensor:
    """(S_ref, S_model) 0/1 matrix taking the reference's style weights to the model's: styles match by name,
    since a student may order them differently or carry more."""
    missing = [n for n in reference if n not in model]
    if missing:
        raise ValueError(f"{label} lacks the teacher's style(s) {', '.join(missing)} (it has {', '.join(model)}); "
                         "styles are matched by name")
    m = torch.zeros(len(reference), len(model))
    for i, n in enumerate(reference):
        m[i, list(model).index(n)] = 1.0
    return m


@dataclass
class Reference:
    """The teacher and its outputs on the held-out photos for the sheet's columns, made once for every model."""

    label: str
    model: Stylizer
    columns: list[tuple[str, torch.Tensor, float]]  # sheet_columns of the teacher's styles
    photos: list[tuple[torch.Tensor, torch.Tensor]]  # (input (1,3,H,W), teacher outputs (C,3,H,W))

    @classmethod
    def build(cls, label: str, model: Stylizer, photos: list[Image.Image], size: int) -> Reference:
        cols = sheet_columns(model.style_names)
        weights = torch.stack([w for _, w, _ in cols])
        strength = torch.tensor([[s] for _, _, s in cols])
        pairs = []
        for img in tqdm(photos, desc="teacher outputs", dynamic_ncols=True, leave=False):
            x = to_tensor(short_side(img, size))[None]
            pairs.append((x, run_stylizer(model, x.expand(len(cols), -1, -1, -1), weights, strength)))
        return cls(label, model, cols, pairs)


@dataclass
class Fidelity:
    """One model's outputs against the teacher's: (PSNR dB, SSIM) per sheet column, mean over the photos."""

    label: str
    scores: dict[str, tuple[float, float]]
    overall: tuple[float, float]  # mean over the pure styles and blends (the strength-1 columns)


def fidelity(model: Stylizer, label: str, ref: Reference) -> Fidelity:
    """PSNR is inf where the outputs are identical (the teacher against itself)."""
    weights = torch.stack([w for _, w, _ in ref.columns]) @ style_map(ref.model.style_names, model.style_names, label)
    strength = torch.tensor([[s] for _, _, s in ref.columns])
    scores = np.zeros((len(ref.columns), 2))
    for x, target in tqdm(ref.photos, desc=f"fidelity {label}", dynamic_ncols=True, leave=False):
        y = run_stylizer(model, x.expand(len(ref.columns), -1, -1, -1), weights, strength)
        scores += [(psnr(y[i], target[i]), ssim(y[i], target[i])) for i in range(len(ref.columns))]
    scores /= len(ref.photos)
    full = [i for i, (_, _, s) in enumerate(ref.columns) if s == 1.0]
    per = {c: (float(p), float(q)) for (c, _, _), (p, q) in zip(ref.columns, scores)}
    return Fidelity(label, per, (float(scores[full, 0].mean()), float(scores[full, 1].mean())))
