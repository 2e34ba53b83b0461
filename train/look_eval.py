"""The look table of `python -m train eval`: recognisability, style gain, faces kept and static-camera
change for every model, with the do-nothing rows (the input itself, and a palette-only recolour) beside them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train.data import LOOK_PHOTOS, SHARED_DATA
from train.look import (
    HELD_OUT_DETECTOR,
    LookScores,
    descriptor,
    face_rate,
    mean_descriptor,
    noisy_still,
    reinhard,
    score,
    static_change,
)

FRAME_SHORT_SIDE = 360  # photos are stylized at a 640x360 frame's scale, where strokes must read
STATIC_FRAMES = 8


@dataclass(frozen=True)
class LookRow:
    label: str
    scores: LookScores
    faces_full: float | None  # face rate at strength 1 (None for rows without a strength)
    faces_mid: float | None  # at strength 0.6
    faces_full_held_out: float | None  # at strength 1, by a cascade no training term reads (look.HELD_OUT_DETECTOR)
    static_ratio: float | None  # output change a frame / input change a frame, static camera


def look_photos(root: Path = SHARED_DATA, names: Sequence[str] = LOOK_PHOTOS) -> list[np.ndarray]:
    """The photos the look is judged on, at frame scale; no shipped model trains on any of them."""
    out = []
    for rel in names:
        p = root / rel
        if p.is_file():
            img = Image.open(p).convert("RGB")
            s = FRAME_SHORT_SIDE / min(img.size)
            out.append(np.asarray(img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)))
    return out


def render(model, rgb: np.ndarray, style: int, strength: float = 1.0) -> np.ndarray:
    """One photo through a Stylizer (train.eval_metrics' protocol) in one style: RGB uint8 in, RGB uint8 out."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    w = torch.zeros(1, len(model.style_names))
    w[0, style] = 1.0
    with torch.no_grad():
        y = model(x, w, torch.full((1, 1), strength)).float().cpu()
    return (y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def reference_images(paths: Sequence[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def look_rows(models: dict[str, object], photos: list[np.ndarray], portraits: list[np.ndarray]) -> list[LookRow]:
    """The input and palette-only rows (against the first model's references), then one row per model."""
    first = next(iter(models.values()))
    styles = tuple(first.style_names)
    ref_imgs = [reference_images(paths) for paths in first.style_refs]
    refs = [mean_descriptor([descriptor(r) for r in imgs]) for imgs in ref_imgs]
    rows = [LookRow("input (do nothing)", score(photos, refs, styles, lambda i, j: photos[i]), None, None, None, 1.0),
            LookRow("palette only (Reinhard)", score(photos, refs, styles, lambda i, j: reinhard(photos[i], ref_imgs[j][0])),
                    None, None, None, None)]
    still = noisy_still(photos[0], STATIC_FRAMES)
    for label, model in models.items():
        order = [list(model.style_names).index(s) for s in styles]
        scores = score(photos, refs, styles, lambda i, j, m=model, o=order: render(m, photos[i], o[j]))
        outs = {k: [render(model, p, k) for p in portraits] for k in order}
        full = float(np.mean([face_rate(portraits, outs[k]) for k in order]))
        held_out = float(np.mean([face_rate(portraits, outs[k], HELD_OUT_DETECTOR) for k in order]))
        mid = float(np.mean([face_rate(portraits, [render(model, p, k, 0.6) for p in portraits]) for k in order]))
        ratio = static_change([render(model, f, order[0]) for f in still]) / static_change(still)
        rows.append(LookRow(label, scores, full, mid, held_out, ratio))
    return rows


def _f(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def look_md(rows: list[LookRow], photos: int) -> list[str]:
    styles = rows[0].scores.styles
    lines = [(f"### The look ({photos} photos no model trained on, strength 1; bar: top-1 >= 0.75, "
              "mean gain >= 0.50, every style's gain >= 0.25)"), "",
             "| model | top-1 ↑ | mean gain ↑ | min gain ↑ | " + " | ".join(f"gain {s}" for s in styles)
             + " | faces kept @1 | @0.6 | @1, held-out cascade | static change ×input |",
             "|---|---:|---:|---:|" + "---:|" * len(styles) + "---:|---:|---:|---:|"]
    for r in rows:
        s = r.scores
        lines.append(f"| {r.label} | {s.top1:.2f} | {s.mean_gain:.2f} | {s.min_gain:.2f} | "
                     + " | ".join(f"{s.gain[n]:.2f}" for n in styles)
                     + f" | {_f(r.faces_full)} | {_f(r.faces_mid)} | {_f(r.faces_full_held_out)} | {_f(r.static_ratio)} |")
    return lines
