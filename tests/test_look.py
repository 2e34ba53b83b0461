"""The look measure (train/look.py) on a small committed fixture: four held-out photos and the bank's
references, downscaled (tests/look/README.md). Doing nothing and a palette-only recolour must fail the
look bar; the bundled model, run on the CPU back-end users get, must pass it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.loader import load_backend
from train.look import LookScores, descriptor, distance, face_rate, mean_descriptor, reinhard, score

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "look"
PORTRAITS = ("kodim04.jpg", "headpose_female_0010.jpg")
# The fixture's own bar. The look issue's bar (top-1 0.75, mean gain 0.50, min 0.25) is judged by `python -m
# train eval` on ten photos; these four are half portraits, the hardest subjects, and the references are
# downscaled. Doing nothing scores 0.12 / 0.00 / 0.00 here, a palette-only recolour 0.34 / 0.19 / 0.11, and
# the bundled model (P28) 0.78 / 0.48 / 0.36 (2026-12-07; P23 0.81 / 0.48 / 0.36, P19 0.72 / 0.48 / 0.39).
FIXTURE_BAR = {"top1": 0.6, "mean_gain": 0.35, "min_gain": 0.25}


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {p.name: _rgb(p) for p in sorted((FIXTURE / "photos").iterdir())}


@pytest.fixture(scope="module")
def bank() -> tuple[tuple[str, ...], list[list[np.ndarray]]]:
    styles = tuple(load_backend(None, "onnx", 1).style_names)
    refs = [[_rgb(p) for p in sorted((FIXTURE / "refs").glob(f"{s}_*"))] for s in styles]
    assert all(refs), "every bundled style needs its references in tests/look/refs"
    return styles, refs


def _descs(refs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    return [mean_descriptor([descriptor(r) for r in imgs]) for imgs in refs]


def _stylize(backend, rgb: np.ndarray, style: int, strength: float = 1.0) -> np.ndarray:
    return backend.stylize(np.ascontiguousarray(rgb), backend.contract.weights_vector({backend.style_names[style]: 1.0}),
                           strength)


def test_descriptor_separates_strokes_from_palette() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((256, 256, 3), 200, np.uint8)
    lines = flat.copy()
    lines[::8] = 20  # dark horizontal lines on a light ground
    noisy = np.clip(flat + rng.normal(0, 3, flat.shape), 0, 255).astype(np.uint8)
    d_flat, d_lines, d_noisy = descriptor(flat), descriptor(lines), descriptor(noisy)
    assert distance(d_flat, d_flat) == pytest.approx(0.0, abs=1e-7)
    assert distance(d_flat, d_noisy) < distance(d_flat, d_lines)
    assert 0.0 < distance(d_flat, d_lines) <= 1.0
    # Lines drawn horizontally put their gradient energy in the vertical-gradient orientation bin (pi/2).
    orient = d_lines[2]
    assert int(np.argmax(orient)) == 6


def test_doing_nothing_and_palette_only_fail_the_look_bar(photos, bank) -> None:
    styles, refs = bank
    images = list(photos.values())
    descs = _descs(refs)
    identity = score(images, descs, styles, lambda i, j: images[i])
    assert identity.mean_gain == pytest.approx(0.0, abs=1e-9)
    assert identity.top1 <= 0.25  # every photo lands on one nearest style: chance
    assert not identity.passes(**FIXTURE_BAR)
    palette = score(images, descs, styles, lambda i, j: reinhard(images[i], refs[j][0]))
    assert palette.mean_gain > 0.05  # a recolour does move the colour histograms...
    assert not palette.passes(**FIXTURE_BAR)  # ...but leaves every stroke histogram as the photo's
    assert palette.top1 < FIXTURE_BAR["top1"] and palette.min_gain < FIXTURE_BAR["min_gain"]
    assert palette.mean_gain < 0.35


def test_the_bundled_model_passes_the_look_bar_and_keeps_faces(photos, bank) -> None:
    styles, refs = bank
    backend = load_backend(None, "auto", 2)
    order = [list(backend.style_names).index(s) for s in styles]
    images = list(photos.values())
    scores: LookScores = score(images, _descs(refs), styles, lambda i, j: _stylize(backend, images[i], order[j]))
    report = f"top-1 {scores.top1:.2f}, mean gain {scores.mean_gain:.2f}, gains {scores.gain}"
    assert scores.passes(**FIXTURE_BAR), report
    portraits = [photos[n] for n in PORTRAITS]
    # The issue asks for 0.9 at strength 1 and every face at 0.6; `python -m train eval` on twelve portraits gives
    # the bundled model (P28) 0.93 and 1.00. Here, on two portraits, it keeps the webcam face in every style at
    # both strengths, and kodim04's close crop in every style at 0.6 but in four of eight at 1 (vangogh,
    # kandinsky, monet and munch lose it; P19 lost it in kandinsky alone, before the flat-fill term: docs/training.md,
    # P21-P23; P28 the same four). These floors stop it getting worse.
    rates = {}
    for strength, floor in ((1.0, 0.7), (0.6, 0.95)):
        rates[strength] = [face_rate(portraits, [_stylize(backend, p, k, strength) for p in portraits]) for k in order]
        assert float(np.mean(rates[strength])) >= floor, f"faces kept at strength {strength}: {rates[strength]}"
    print(f"faces kept: {rates}")


def test_strength_zero_is_the_input_and_half_is_halfway(photos, bank) -> None:
    styles, refs = bank
    backend = load_backend(None, "auto", 2)
    photo = photos["kodim23.jpg"]
    descs = _descs(refs)
    k = list(backend.style_names).index(styles[0])
    zero = _stylize(backend, photo, k, 0.0)
    assert np.abs(zero.astype(np.float32) - photo).mean() < 6.0  # levels of 255
    gains = []
    for strength in (0.0, 0.5, 1.0):
        out = descriptor(_stylize(backend, photo, k, strength))
        gains.append(1 - distance(out, descs[0]) / distance(descriptor(photo), descs[0]))
    assert gains[0] < gains[1] < gains[2]
    assert 0.2 < (gains[1] - gains[0]) / (gains[2] - gains[0]) < 0.8, f"strength 0.5 is not halfway: {gains}"
