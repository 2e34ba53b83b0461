"""Contact sheets: held-out photos (rows) x styles and a blend (columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from engines.artifact import load_artifact
from train.data import held_out_images, to_tensor


def fit_height(img: Image.Image, height: int) -> Image.Image:
    """Resize to `height` (both sides rounded down to the network's multiple of 8)."""
    w = round(img.width * height / img.height) // 8 * 8
    return img.resize((w, height // 8 * 8), Image.LANCZOS)


@torch.no_grad()
def contact_sheet(model: str | Path | None, out: str | Path, height: int = 240) -> Path:
    art = load_artifact(model)
    net = art.load_student()
    names = art.contract.style_names
    columns: list[tuple[str, torch.Tensor]] = [(n, torch.eye(len(names))[i]) for i, n in enumerate(names)]
    if len(names) >= 2:
        columns.append((f"{names[0]}+{names[1]}", torch.tensor([0.5, 0.5] + [0.0] * (len(names) - 2))))
    rows = []
    for _, img in held_out_images():
        im = fit_height(img, height)
        x = to_tensor(im)[None]
        tiles = [im]
        for _, w in columns:
            y = net(x, w[None], torch.ones(1, 1))[0]
            tiles.append(Image.fromarray((y.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)))
        rows.append(tiles)
    if not rows:
        raise FileNotFoundError("no held-out images found (is shared/data present?)")
    col_w = max(max(t.width for t in r) for r in rows)
    label_h = 18
    sheet = Image.new("RGB", (col_w * (len(columns) + 1), label_h + sum(r[0].height for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(["input"] + [c for c, _ in columns]):
        draw.text((j * col_w + 4, 3), label, fill="black")
    y = label_h
    for r in rows:
        for j, t in enumerate(r):
            sheet.paste(t, (j * col_w, y))
        y += r[0].height
    sheet.save(out)
    return Path(out)
