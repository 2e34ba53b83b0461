"""The drawn targets of the line styles (train/toon.py): where their lines and fills go on shapes with a known
answer, that the look measure reads them as the style (and not as the photo), and the term's weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.look import descriptor, distance, mean_descriptor, reinhard
from train.toon import cel, lines, parse_toon, targets, toon_loss

pytestmark = pytest.mark.unit

LOOK = Path(__file__).parent / "look"


def _disc(colour: tuple[float, float, float], ground: float = 0.85) -> np.ndarray:
    y, x = np.mgrid[0:160, 0:160]
    img = np.full((160, 160, 3), ground, np.float32)
    img[(y - 80) ** 2 + (x - 80) ** 2 < 50**2] = colour
    return img


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_lines_draw_the_contour_and_leave_fills_and_walls_as_paper() -> None:
    page = lines(_disc((0.35, 0.35, 0.35)))
    luma = page.mean(2)
    assert luma[80, 80] > 0.97 and luma[10, 10] > 0.97  # the disc's inside and the wall: white paper
    ring = luma[80, 27:33]  # across the contour, on the dark side
    assert ring.min() < 0.3
    assert (luma < 0.5).mean() < 0.1  # lines, not a filled shape
    assert lines(np.full((64, 64, 3), 0.5, np.float32)).min() > 0.99  # a bare wall draws nothing
    black = lines(_disc((0.05, 0.05, 0.05))).mean(2)  # the darkest regions are the woodcut's solid black
    assert black[60:100, 60:100].max() < 0.1 and black[10, 10] > 0.97


def test_a_cel_keeps_a_fill_colour_outlines_it_and_turns_a_grey_wall_to_paper() -> None:
    out = cel(_disc((0.8, 0.15, 0.1)))
    r, g, b = out[80, 80]
    assert r > 0.6 and r > 2 * g and r > 2 * b  # the red stays a red fill
    assert out[10, 10].min() > 0.97  # the light grey wall is the page
    assert out[80, 27:33].mean(1).min() < 0.25  # a dark outline on the contour
    inside = out[60:100, 60:100]
    assert inside.std(axis=(0, 1)).max() < 0.02  # flat


def test_the_look_measure_reads_the_drawn_targets_as_their_styles() -> None:
    """On the fixture photos each drawn target is nearer its style's references than the photo is, by more than a
    palette-only recolour (Reinhard to the style's first reference) gets, and the line drawing is nearer the
    woodcut than the cel is."""
    photos = [_rgb(p) for p in sorted((LOOK / "photos").iterdir())]
    gains: dict[str, list[float]] = {"lines": [], "cel": [], "palette/lineart": [], "palette/cartoon": []}
    for style, kind, fn in (("lineart", "lines", lines), ("cartoon", "cel", cel)):
        paths = sorted((LOOK / "refs").glob(f"{style}_*"))
        ref = mean_descriptor([descriptor(_rgb(p)) for p in paths])
        for photo in photos:
            base = distance(descriptor(photo), ref)
            drawn = (fn(photo.astype(np.float32) / 255.0) * 255 + 0.5).astype(np.uint8)
            gains[kind].append(1 - distance(descriptor(drawn), ref) / base)
            gains[f"palette/{style}"].append(1 - distance(descriptor(reinhard(photo, _rgb(paths[0]))), ref) / base)
    mean = {k: float(np.mean(v)) for k, v in gains.items()}
    assert mean["lines"] > 0.45 and mean["lines"] > mean["palette/lineart"] + 0.1, mean
    assert mean["cel"] > 0.25 and mean["cel"] > mean["palette/cartoon"] + 0.05, mean
    assert min(gains["lines"] + gains["cel"]) > 0.1, gains


def test_the_term_weighs_guided_rows_only() -> None:
    x = torch.rand(3, 3, 32, 32)
    y = torch.rand(3, 3, 32, 32, requires_grad=True)
    assert float(toon_loss(y, targets(x, [None, None, None]), [None, None, None]).detach()) == 0.0
    live = toon_loss(y, targets(x, ["cel", None, None]), ["cel", None, None])
    assert float(live.detach()) > 0.05
    live.backward()
    assert y.grad[0].abs().sum() > 0 and y.grad[1:].abs().sum() == 0  # unguided rows get no gradient
    assert parse_toon(["lineart=lines", "missing=cel"], ("vangogh", "lineart")) == {1: "lines"}
    with pytest.raises(ValueError, match="NAME=KIND"):
        parse_toon(["lineart=woodcut"], ("lineart",))
