"""Drawn targets for the line styles: a line drawing of the photo, and a cel (flat colour, dark outlines).

The style terms ask `lineart` and `cartoon` for the references' share of black and paper but not for where it
goes, and the students laid it as masses: black blots on a bare wall, a face as a black-and-white mask, and
cartoon as white paper with colour only in the shadows. The line term (train/line_losses.py) moved the ink
towards edges but never drew an outline. These targets are drawn from the photo itself, by the classic
non-photorealistic filters (an edge-preserving smoothing, a difference-of-Gaussians line, Winnemöller et al.
2006), so each is a function of the input that a small network can learn:
- `lines`: dark lines along the photo's contours, and its darkest regions solid black, on white paper;
- `cel`: the photo's colours as a few flat fills, its light greys as paper, and the same lines, heavier, as
  dark outlines.
The full-strength output of a guided style is held to its target (`toon_loss`); halfway looks stay the
network's own (the trained strength is not a cross-fade).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("lines", "cel")

# The line: difference of Gaussians at sigma and 1.6 sigma on a bilateral-smoothed grey, dark where the blurred
# image falls under TAU of the wider blur (the dark side of an edge), saturated by a tanh. SIGMA 2.5 px draws
# lines a viewer sees at 640x360 (at 1.2 px they were hairlines).
SIGMA, K, TAU, PHI = 2.5, 1.6, 0.985, 60.0
INK = 0.0  # the outline: black, as the references ink theirs
# The woodcut's solid blacks: regions darker than DARK grey (a dark coat, black hair) are filled, with a SOFT
# edge. Lines alone scored a lineart gain of 0.61 and top-1 0.7 on the look photos, the woodcut being half
# black; with the solid blacks 0.65 and 1.0. A bare wall is never that dark, so it stays paper.
DARK, SOFT = 0.2, 0.05
# The cel: the smoothed photo's colours clustered into FILLS flat fills (k-means in Lab, a median to clear speckle),
# their light lifted into [LIFT, 1] and chroma x CHROMA, and fills at least PAPER light and under GREY chroma
# (OpenCV 8-bit Lab units) become the white page, as in the references (a wall, a sky). The outline is the line
# widened by a blur of OUTLINE px, as clip art inks its contours heavier than its details. Picked on the look
# photos: the cel scores a cartoon gain of 0.35 (top-1 0.8; with LIFT 0.45, darker fills, 0.33). The earlier cel
# (bilateral smoothing, light in four levels) scored 0.36, but it kept the photo's shading and its page turned
# lit skin white, and the students trained on it painted a pale shaded photo.
FILLS, LIFT, CHROMA, PAPER, GREY, OUTLINE = 8, 0.6, 2.0, 0.7, 25.0, 1.0


def _u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def ink(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H, W) float32 in [0, 1]: 1 where a line is drawn."""
    smooth = cv2.bilateralFilter(_u8(rgb), 7, 40, 5)
    grey = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    dog = cv2.GaussianBlur(grey, (0, 0), SIGMA) - TAU * cv2.GaussianBlur(grey, (0, 0), SIGMA * K)
    return np.where(dog >= 0.0, 0.0, np.tanh(-PHI * dog)).astype(np.float32)


def solid(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H, W) float32 in [0, 1]: 1 where the photo is dark enough to be solid black."""
    smooth = cv2.bilateralFilter(_u8(rgb), 9, 40, 7)
    grey = cv2.GaussianBlur(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, (0, 0), 1.5)
    return np.clip((DARK - grey) / SOFT + 0.5, 0.0, 1.0)


def lines(rgb: np.ndarray) -> np.ndarray:
    """Dark lines and the darkest regions as solid black on white paper, (H, W, 3) float32."""
    page = 1.0 - 0.95 * np.maximum(ink(rgb), solid(rgb))
    return np.repeat(page[..., None], 3, axis=2)


def cel(rgb: np.ndarray) -> np.ndarray:
    """Flat fills, a white page for light greys, heavy dark outlines, (H, W, 3) float32."""
    smooth = _u8(rgb)
    for _ in range(2):  # small bilateral passes flatten texture and keep the borders the fills follow
        smooth = cv2.bilateralFilter(smooth, 9, 30, 7)
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
    cv2.setRNGSeed(0)  # k-means++ seeding: the same photo always gets the same fills
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 8, 1.0)
    _, label, centres = cv2.kmeans(lab.reshape(-1, 3), FILLS, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    fills = cv2.medianBlur(np.clip(centres[label.ravel()].reshape(lab.shape), 0, 255).astype(np.uint8), 5)
    lab = fills.astype(np.float32)
    level = lab[..., 0] / 255.0
    chroma = np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    lab[..., 0] = (LIFT + (1.0 - LIFT) * level) * 255.0
    lab[..., 1:] = 128.0 + (lab[..., 1:] - 128.0) * CHROMA
    lab[(level >= PAPER) & (chroma < GREY)] = (255.0, 128.0, 128.0)
    fill = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32) / 255.0
    e = ink(rgb)
    e = np.clip(np.maximum(e, 1.5 * cv2.GaussianBlur(e, (0, 0), OUTLINE)), 0.0, 1.0)[..., None]
    return fill * (1.0 - e) + INK * e


DRAW = {"lines": lines, "cel": cel}


def targets(x: torch.Tensor, kinds: list[str | None]) -> torch.Tensor:
    """(N, 3, H, W) photos in [0, 1] -> each row's drawn target (the photo itself where its kind is None)."""
    rows = []
    for img, kind in zip(x, kinds):
        if kind is None:
            rows.append(img)
            continue
        rgb = img.detach().permute(1, 2, 0).cpu().numpy()
        rows.append(torch.from_numpy(DRAW[kind](rgb)).permute(2, 0, 1).to(x))
    return torch.stack(rows)


def _grad(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return img[..., :, 1:] - img[..., :, :-1], img[..., 1:, :] - img[..., :-1, :]


def toon_loss(y: torch.Tensor, t: torch.Tensor, kinds: list[str | None]) -> torch.Tensor:
    """Mean over the guided rows (those with a kind; 0 when none is) of three L1 terms against the row's drawn
    target `t` (from `targets`), all in 2 px block means:
    - the values;
    - the gradients: shading or texture left inside a flat fill costs little in value, a few levels, but all of
      its gradient, and a student held to values alone painted the photo's shading under its outlines;
    - the target's ink, which must be matched by ink within a pixel. Plain L1 is met by the median, and where a
      line's place is a pixel unsure the median is paper: the students drew faint grey lines."""
    share = torch.tensor([float(k is not None) for k in kinds], device=y.device)
    total = share.sum()
    if float(total) <= 0:
        return y.sum() * 0.0
    t = t.detach()
    t_luma = t.mean(1, keepdim=True)
    inked = (t_luma < 0.5).float()
    darkest = -F.max_pool2d(-y.mean(1, keepdim=True), 3, stride=1, padding=1)
    missed = (F.relu(darkest - t_luma) * inked).mean(dim=(1, 2, 3))
    ys, ts = F.avg_pool2d(y, 2), F.avg_pool2d(t, 2)
    value = (ys - ts).abs().mean(dim=(1, 2, 3))
    grad = sum((gy - gt).abs().mean(dim=(1, 2, 3)) for gy, gt in zip(_grad(ys), _grad(ts)))
    per_row = value + grad + missed
    return (per_row * share).sum() / total


def parse_toon(specs: list[str], names: tuple[str, ...]) -> dict[int, str]:
    """["lineart=lines", "cartoon=cel"] -> {style row: kind}, for the styles this run has."""
    out: dict[int, str] = {}
    for spec in specs:
        name, sep, kind = spec.partition("=")
        if not sep or kind not in KINDS:
            raise ValueError(f"--toon {spec!r}: expected NAME=KIND with KIND one of {', '.join(KINDS)}")
        if name in names:
            out[names.index(name)] = kind
    return out
