"""Feed-forward perceptual training of the student: the foundation's default model.

Style statistics (mixture of the bank's references) + content + colour + TV,
on EfficientNet-Lite0 expansion features. Later the GAN teacher and the
distillation replace this recipe; the network and artifact stay the same.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from engines.artifact import save_artifact
from engines.contract import IOContract
from engines.student import StudentConfig, StudentNet, count_macs
from train.data import (
    SHARED_DATA,
    CropSampler,
    content_images,
    load_rgb,
    resolve_style,
    sample_style_weights,
    to_tensor,
)
from train.features import ExpansionFeatures
from train.losses import colour_loss, content_loss, style_loss, style_stats, tv_loss
from train.numerics import flushed_denormals
from train.thumbs import write_thumbnails

DEFAULT_STYLES = ("vangogh", "hokusai", "kandinsky", "monet", "klimt", "lineart")


@dataclass
class PerceptualConfig:
    styles: list[str] = field(default_factory=lambda: list(DEFAULT_STYLES))
    out: str = "runs/perceptual"
    steps: int = 4000
    batch: int = 4
    crop: int = 224
    lr: float = 1.5e-3
    style_weight: float = 100.0
    style_taps: list[int] = field(default_factory=lambda: [2, 4, 7, 10])
    content_weight: float = 15.0
    content_taps: list[int] = field(default_factory=lambda: [4, 7])
    colour_weight: float = 10.0
    tv_weight: float = 50.0
    style_margin: float = 0.08
    style_grid: int = 2
    film_lr_scale: float = 2.0
    grad_clip: float = 1.0
    style_short_side: int = 400
    seed: int = 0
    threads: int = 2
    save_every: int = 250
    allow_noncommercial: bool = False
    data: str = str(SHARED_DATA)


def train_perceptual(cfg: PerceptualConfig) -> Path:
    with flushed_denormals():
        return _train_perceptual(cfg)


def _train_perceptual(cfg: PerceptualConfig) -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    named = [resolve_style(s, Path(cfg.data)) for s in cfg.styles]
    names = tuple(n for n, _ in named)
    if len(set(names)) != len(names):
        raise ValueError(f"style names must be unique: {names}")
    features = ExpansionFeatures()
    style_imgs = [to_tensor(load_rgb(p, cfg.style_short_side, max_long=2 * cfg.style_short_side)) for _, p in named]
    stats = style_stats(features, style_imgs)

    content = content_images(Path(cfg.data), allow_noncommercial=cfg.allow_noncommercial)
    sampler = CropSampler([im for _, im in content], crop=cfg.crop, seed=cfg.seed)

    net = StudentNet(StudentConfig(num_styles=len(names)))
    contract = IOContract(style_names=names)
    # FiLM parameters carry everything that differs between styles; a higher rate lets styles part early
    # instead of all sharing one look.
    film = [p for n, p in net.named_parameters() if "film" in n]
    rest = [p for n, p in net.named_parameters() if "film" not in n]
    opt = torch.optim.Adam([{"params": rest}, {"params": film}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, cfg.lr * cfg.film_lr_scale],
                                                total_steps=cfg.steps, pct_start=0.05)
    provenance = {
        "recipe": "perceptual (style statistics + content + colour + TV on EfficientNet-Lite0)",
        "config": asdict(cfg),
        "styles": {n: str(p.name) for n, p in named},
        "content_images": len(content),
        "macs_640x360": count_macs(net.config),
    }
    log = (out / "log.csv").open("w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "loss", "style", "content", "colour", "tv", "seconds"])
    t0 = time.time()
    bar = tqdm(range(1, cfg.steps + 1), desc="perceptual", dynamic_ncols=True)
    for step in bar:
        x = sampler.sample(cfg.batch)
        w = sample_style_weights(cfg.batch, len(names), rng)
        target = stats.mix(w)
        strength = torch.ones(cfg.batch, 1)
        y = net(x, w, strength)
        with torch.no_grad():
            fc = features(x)
        fy = features(y)
        ls, lc = style_loss(fy, target, tuple(cfg.style_taps), margin=cfg.style_margin, grid=cfg.style_grid), content_loss(fy, fc, tuple(cfg.content_taps))
        lcol, ltv = colour_loss(y, target, margin=cfg.style_margin), tv_loss(y)
        loss = cfg.style_weight * ls + cfg.content_weight * lc + cfg.colour_weight * lcol + cfg.tv_weight * ltv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # A 5x FiLM rate once drove a scale to -1 mid-run: every feature died and the net fell back
        # to the identity for good. Clipping keeps one bad batch from doing that.
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", style=f"{ls.item():.4f}", content=f"{lc.item():.3f}")
        writer.writerow([step, loss.item(), ls.item(), lc.item(), lcol.item(), ltv.item(), round(time.time() - t0, 1)])
        if step % cfg.save_every == 0 or step == cfg.steps:
            log.flush()
            provenance["steps_done"] = step
            save_artifact(net, contract, out / "model", provenance=provenance, export_onnx=step == cfg.steps)
            # Snapshots too, so a late collapse never costs the whole run.
            save_artifact(net, contract, out / "snapshots" / f"step{step:06d}", provenance=provenance,
                          export_onnx=False)
    log.close()
    write_thumbnails([p for _, p in named], names, out / "model" / "thumbs")
    return out / "model"
