"""The own-style acceptance (train/style_acceptance.py) on small inputs: the look fixture's four photos and
the bank's references (tests/look), the bundled model on ONNX Runtime. The per-row measure agrees with the
look table's, doing nothing scores no gain, and a row the shipped fit makes (a few steps, leave-one-out)
beats doing nothing by a wide margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.loader import load_backend
from train.look import descriptor, mean_descriptor, score
from train.style_acceptance import (
    WARP_BAR,
    RowRenderer,
    grid_sheet,
    nearest_style,
    passes_ratio,
    ratio,
    row_look,
    save_jpeg,
    steady_ratio,
)

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "look"


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def setup():
    backend = load_backend(None, "onnx", 1)
    render = RowRenderer(backend)
    photos = [_rgb(p) for p in sorted((FIXTURE / "photos").iterdir())]
    pics = {s: [_rgb(p) for p in sorted((FIXTURE / "refs").glob(f"{s}_*"))] for s in render.trained}
    refs = [mean_descriptor([descriptor(p) for p in pics[s]]) for s in render.trained]
    return backend, render, photos, pics, refs, [descriptor(p) for p in photos]


def test_row_look_agrees_with_the_look_table(setup):
    _, render, photos, _, refs, inputs = setup
    outs = {j: render(photos, render.row(s)) for j, s in enumerate(render.trained[:3])}
    table = score(photos, refs[:3], render.trained[:3], lambda i, j: outs[j][i])
    for j, s in enumerate(render.trained[:3]):
        mine = row_look(inputs, outs[j], refs[:3], j)
        assert mine.gain == pytest.approx(table.gain[s], abs=1e-9)
        assert mine.top1 == pytest.approx(table.hits[s], abs=1e-9)


def test_a_trained_row_looks_most_like_its_own_style(setup):
    """nearest_style names the bank style whose steadiness a fitted style is held to: for the trained rows of
    the cartoon and a painting, their own; for the woodcut's, one of the two ink-on-white styles. P19's lineart
    row is nearer the cartoon's references on three of these four photos (on the eval's ten its top-1 is 0.60,
    the rest going to cartoon: docs/training.md), so that is all it is held to here."""
    _, render, photos, _, refs, _ = setup
    for s in ("cartoon", "vangogh"):
        assert nearest_style(render(photos, render.row(s)), refs, render.trained) == s
    assert nearest_style(render(photos, render.row("lineart")), refs, render.trained) in ("lineart", "cartoon")


def test_doing_nothing_fails_and_a_fitted_row_beats_it(setup):
    from engines.style_fit import FitConfig, FitUnavailable, check_fit_available, fit_style

    try:
        check_fit_available()
    except FitUnavailable as exc:
        pytest.skip(str(exc))
    backend, render, photos, pics, refs, inputs = setup
    j = render.trained.index("lineart")
    nothing = row_look(inputs, render(photos, render.row("lineart"), strength=0.0), refs, j)
    assert abs(nothing.gain) < 0.05, nothing  # strength 0 is the identity row: the photo itself
    assert nothing.top1 == 0.0
    trained = row_look(inputs, render(photos, render.row("lineart")), refs, j)
    cfg = FitConfig(steps=3, batch=1, crop=96, style_short_side=256, grad_short_side=256, time_budget_s=30)
    res = fit_style(backend.artifact, pics["lineart"], cfg=cfg, exclude=["lineart"])
    assert res.start != "lineart" and res.steps == 3 and res.vector.shape == (backend.film_width,)
    fitted = row_look(inputs, render(photos, res.vector), refs, j)
    assert fitted.gain > nothing.gain + 0.2, (fitted, nothing)
    assert trained.gain > nothing.gain + 0.2
    assert not passes_ratio(nothing.gain, trained.gain)
    assert ratio(fitted.gain, trained.gain) > ratio(nothing.gain, trained.gain)


def test_the_bar_and_the_sheet(tmp_path):
    assert passes_ratio(0.86, 1.0) and not passes_ratio(0.84, 1.0)
    assert not passes_ratio(0.5, 0.0) and np.isnan(ratio(0.5, 0.0))
    # Steady: against the bank's mean, or the trained style it is like where that flickers more (a woodcut).
    assert steady_ratio(0.0036, 0.0030, 0.0012) == pytest.approx(WARP_BAR)
    assert steady_ratio(0.0120, 0.0030, 0.0103) < WARP_BAR < steady_ratio(0.0120, 0.0030, 0.0012)
    assert steady_ratio(0.0040, 0.0030, None) > WARP_BAR
    rng = np.random.default_rng(0)
    cells = [[("a", rng.integers(0, 255, (90, 160, 3), np.uint8)), ("b", None)],
             [("c", rng.integers(0, 255, (300, 100, 3), np.uint8))]]
    sheet = grid_sheet(cells, 120, "t")
    assert sheet.height > 2 * 120
    size = save_jpeg(sheet, tmp_path / "s.jpg", limit_kb=60)
    assert size <= 60 * 1024 and Image.open(tmp_path / "s.jpg").format == "JPEG"
