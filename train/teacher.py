"""The multi-reference GAN teacher: `python -m train teacher --preset PRESET.toml [--set key=value ...]`.

Loss: L_adv + grad_weight * L_grad + expr_weight * L_expr + style, content, colour, TV and the two
temporal terms (synthetic motion with an exact flow; real clip pairs with DIS flow and occlusion
masks). Style weights are sampled one-hot and as Dirichlet mixtures, so blends are trained for.
Strengths are sampled too: s = 1 trains the style (and the critic), s < 1 the expression knob.

Checkpoint I/O and the teacher loader are train/teacher_checkpoint.py.

Runs on the CPU or one GPU (AMP in bf16, channels_last), or on several processes under torchrun
(DDP; NCCL on GPUs, gloo on CPUs). Checkpoints store the whole config, so `--resume` and
`python -m train eval` rebuild the exact networks.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from PIL import Image
from tqdm import tqdm

from engines.features import ExpansionFeatures
from engines.numerics import flushed_denormals
from engines.style_losses import StyleStats, content_loss, pooled_style_stats, tv_loss
from engines.temporal import temporal_loss, warp
from train.budget import TimeBudget, fit_schedule
from train.data import HELD_OUT, SHARED_DATA, load_rgb, resolve_style, sample_style_weights, to_tensor
from train.discriminator import DiscriminatorConfig, MultiScaleDiscriminator, hinge_d_loss, hinge_g_loss
from train.flow import random_affine_flow, smooth_random_flow
from train.settings import load_settings, sample_strength
from train.teacher_checkpoint import export_generator, save_checkpoint
from train.teacher_data import DataSpec, TeacherBatches
from train.teacher_losses import (
    edge_ssim_loss,
    expression_colour_loss,
    expression_loss,
    gradient_loss,
    grey,
    local_colour_loss,
)
from train.teacher_net import TeacherNet, TeacherNetConfig, count_macs, count_params, expand_banks

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TeacherConfig:
    """Every knob of a teacher run; a preset TOML sets any of them (flat keys), `--set` overrides."""

    styles: list[str] = field(default_factory=lambda: ["vangogh", "hokusai", "kandinsky", "monet", "klimt",
                                                       "lineart", "munch"])
    # Fused styles: "NAME=ref1,ref2,..." (paths or style-file prefixes), one style from their pooled statistics.
    fuse: list[str] = field(default_factory=list)
    out: str = "runs/teacher"
    data: str = str(SHARED_DATA)
    allow_noncommercial: bool = False
    steps: int = 1200
    stop_after: int = 0  # > 0: checkpoint and stop at this step (train in chunks; --resume goes on)
    # > 0: fit the training loop into this many minutes. After a few timed steps the run sets `steps` from its
    # own speed and scales the step-counted schedule (critic start and ramp, saves) by the same factor,
    # so a lent GPU of unknown speed still finishes the whole learning-rate curve.
    time_budget_min: float = 0.0
    crop: int = 192
    content_batch: int = 3
    real_batch: int = 4
    clip_pairs: bool = True
    # generator / discriminator
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: int = 5
    lowpass: int = 16
    # > 0: the last N residual blocks and the decoder get one filter bank per style (teacher_net.BankConv).
    style_filters: int = 0
    grey_residual: bool = False  # the painted texture carries no colour (teacher_net.TeacherNetConfig)
    chroma: int = 0  # > 0: plus luma-free colour texture, blurred over this many pixels (odd; TeacherNetConfig)
    chroma_lowpass: int = 0
    # A checkpoint whose weights start this run at step 0 (fresh optimisers); shared convolutions
    # become per-style banks where style_filters asks for them. Unlike --resume, the config may differ.
    init: str = ""
    d_scales: int = 2
    d_channels: int = 64
    d_layers: int = 3
    lr_g: float = 1e-3
    lr_d: float = 2e-4
    warmup: int = 100  # linear learning-rate warm-up steps: full-rate first steps paint blobs that never leave
    cond_lr_scale: float = 5.0  # the per-style norm parameters carry the styles: a higher rate lets them part early
    betas: list[float] = field(default_factory=lambda: [0.5, 0.99])
    grad_clip: float = 5.0
    ema_decay: float = 0.995
    # loss weights
    adv_weight: float = 0.5
    adv_start: int = 300  # the critic joins once the perceptual terms have found the style
    adv_ramp: int = 200
    style_weight: float = 60.0
    expr_weight: float = 30.0
    style_taps: list[int] = field(default_factory=lambda: [2, 4, 7, 10])
    style_margin: float = 0.06
    style_grid: int = 1
    # Per-tile targets from the tile's own statistics under the global content->style map (expression_loss):
    # with absolute targets every tile of a 2x2 grid is asked for the reference's contrast, flat or not.
    style_tile_relative: bool = False
    # Feature statistics on luminance only (Gatys et al. 2016, "preserving colour"): colour comes from the
    # RGB statistics and the colour maps. On RGB features, rainbow patches were the cheapest way to look
    # "painted" to every style at once, and every RGB run grew them.
    style_luma: bool = False
    # With style_luma: the same expression loss on RGB features against the references' colour statistics (the
    # eval's measure), at this weight. It is what teaches `chroma` colour texture; the luma features cannot see it.
    style_rgb_weight: float = 0.0
    # Scale each style's RGB term by its references' colourfulness (the most colourful style gets 1): a grey
    # reference then asks for no colour texture. Off by default: unscaled, a wide chroma lowpass met the
    # woodcut's RGB statistics with green and magenta patches (runs c3 / c3l48 / c3w in docs/training.md).
    style_rgb_by_colour: bool = False
    # Per-style cap on how far the statistics targets go from the content's: {name: k in (0, 1]}. At
    # strength s the targets are (1 - s*k)*content + s*k*style. A two-tone reference (the woodcut, RGB std
    # 0.47) is met by a photo only by turning a third of it black; k < 1 asks for ink lines, not a blackout.
    style_intensity: dict[str, float] = field(default_factory=dict)
    # Per-style weight on the style/expression and colour terms: {name: w in (0, 10]}, 1 where not given.
    # One global weight leaves some styles far from their references while others already trade edges
    # for style (run t360ic in docs/training.md).
    style_boost: dict[str, float] = field(default_factory=dict)
    content_weight: float = 8.0
    content_taps: list[int] = field(default_factory=lambda: [4, 7])
    colour_weight: float = 20.0
    grad_weight: float = 2.0
    # 1 - SSIM of full-resolution edge maps (the eval's edge measure): charges texture on flat content,
    # which gradient_loss leaves free. 0 = off in every preset (why: runs e20 / e60 in docs/training.md).
    edge_weight: float = 0.0
    tv_weight: float = 10.0
    local_colour_weight: float = 0.0  # colour blobs that no global palette change explains
    range_weight: float = 10.0  # raw output outside [0, 1]: keeps the straight-through clamp idle
    temporal_weight: float = 20.0
    clip_temporal_weight: float = 20.0
    p_full_strength: float = 0.7
    p_onehot: float = 0.5
    style_short: int = 512
    # infrastructure
    seed: int = 0
    threads: int = 2
    workers: int = 1
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    save_every: int = 200
    # Also keep the EMA generator every N steps (teacher_stepNNNNN.pt): one run then gives a whole path of
    # teachers to evaluate, e.g. how edges and style trade along a fine-tune. 0: only the final teacher.pt.
    snapshot_every: int = 0
    sample_every: int = 100

    @classmethod
    def from_preset(cls, preset: str | Path | None, overrides: list[str] = ()) -> TeacherConfig:
        return load_settings(cls, "teacher", preset, overrides)


# ----------------------------------------------------------------------------- style bank


def per_style_vector(values: dict[str, float], names: tuple[str, ...], key: str = "style_intensity",
                     top: float = 1.0) -> torch.Tensor:
    """(S,) per-style values of setting `key`, 1 where not given; unknown names and values outside (0, top]
    are errors."""
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{key} names unknown style(s) {', '.join(unknown)}; the bank has {', '.join(names)}")
    bad = {k: v for k, v in values.items() if not (isinstance(v, (int, float)) and 0.0 < float(v) <= top)}
    if bad:
        raise ValueError(f"{key} values must be in (0, {top:g}], got {bad}")
    return torch.tensor([float(values.get(n, 1.0)) for n in names])


def style_intensity_vector(intensity: dict[str, float], names: tuple[str, ...]) -> torch.Tensor:
    """(S,) per-style target intensities (style_intensity), each in (0, 1]."""
    return per_style_vector(intensity, names)


def style_boost_vector(boost: dict[str, float], names: tuple[str, ...]) -> torch.Tensor:
    """(S,) per-style loss weights (style_boost), each in (0, 10]."""
    return per_style_vector(boost, names, key="style_boost", top=10.0)


@dataclass
class StyleBank:
    names: tuple[str, ...]
    refs: list[list[Path]]  # per style, one reference or several fused ones

    @classmethod
    def from_config(cls, cfg: TeacherConfig) -> StyleBank:
        root = Path(cfg.data)
        names, refs = [], []
        for spec in cfg.styles:
            name, path = resolve_style(spec, root)
            names.append(name)
            refs.append([path])
        for spec in cfg.fuse:
            name, sep, rest = spec.rpartition("=")
            parts = [p for p in (rest if sep else spec).split(",") if p]
            if len(parts) < 1:
                raise ValueError(f"--fuse needs reference images, got {spec!r}")
            paths = [resolve_style(p, root)[1] for p in parts]
            names.append(name or "fused" + (str(len(cfg.fuse)) if len(cfg.fuse) > 1 else ""))
            refs.append(paths)
        if len(set(names)) != len(names):
            raise ValueError(f"style names must be unique: {names}")
        return cls(tuple(names), refs)

    def colourfulness(self, short_side: int) -> torch.Tensor:
        """(S,) each style's mean |colour - its luma| over its references' pixels: 0 for a black-and-white
        woodcut, about 0.09 for Kandinsky."""
        out = []
        for paths in self.refs:
            images = [to_tensor(load_rgb(p, short_side, max_long=2 * short_side))[None] for p in paths]
            out.append(sum(float((im - grey(im)).abs().mean()) for im in images) / len(images))
        return torch.tensor(out)

    def stats(self, features: ExpansionFeatures, short_side: int, luma: bool = False) -> StyleStats:
        """Each style's statistics; a fused style pools its references' features (equal weight each).

        With `luma`, the feature statistics come from the references' luminance (texture without
        colour) and only the RGB statistics from their colours."""
        images = [[to_tensor(load_rgb(p, short_side, max_long=2 * short_side)) for p in paths] for paths in self.refs]
        colour = pooled_style_stats(features, images)
        if not luma:
            return colour
        texture = pooled_style_stats(features, [[grey(im[None])[0] for im in imgs] for imgs in images])
        return StyleStats(mu=texture.mu, sigma=texture.sigma, rgb_mu=colour.rgb_mu, rgb_sigma=colour.rgb_sigma)


# ----------------------------------------------------------------------------- checkpoints


def build_networks(cfg: TeacherConfig, num_styles: int) -> tuple[TeacherNet, MultiScaleDiscriminator]:
    g = TeacherNet(TeacherNetConfig(num_styles=num_styles, channels=tuple(cfg.channels), blocks=cfg.blocks,
                                    lowpass=cfg.lowpass, style_filters=cfg.style_filters,
                                    grey_residual=cfg.grey_residual,
                                    chroma=cfg.chroma, chroma_lowpass=cfg.chroma_lowpass))
    d = MultiScaleDiscriminator(DiscriminatorConfig(num_styles=num_styles, scales=cfg.d_scales,
                                                    channels=cfg.d_channels, layers=cfg.d_layers))
    return g, d


# ----------------------------------------------------------------------------- training


def _setup_distributed(cfg: TeacherConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if world > 1:
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _preview(g: TeacherNet, bank: StyleBank, data: Path, out: Path, device: torch.device) -> None:
    """One held-out photo in every style, to watch a run as it trains."""
    path = data / HELD_OUT[0]
    if not path.is_file():
        return
    x = to_tensor(load_rgb(path, 160)).to(device)[None]
    x = x[..., : x.shape[-2] // 8 * 8, : x.shape[-1] // 8 * 8]
    s = len(bank.names)
    with torch.no_grad():
        y = g(x.expand(s, -1, -1, -1), torch.eye(s, device=device), torch.ones(s, 1, device=device))
    tiles = torch.cat([x, y]).clamp(0, 1).mul(255).byte().permute(0, 2, 3, 1).cpu().numpy()
    Image.fromarray(tiles.transpose(1, 0, 2, 3).reshape(tiles.shape[1], -1, 3)).save(out)


def train_teacher(cfg: TeacherConfig, resume: str | Path | None = None) -> Path:
    with flushed_denormals():
        return _train_teacher(cfg, resume)


def _train_teacher(cfg: TeacherConfig, resume: str | Path | None = None) -> Path:
    rank, world, device = _setup_distributed(cfg)
    main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed * 1000 + rank)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    bank = StyleBank.from_config(cfg)
    s_count = len(bank.names)
    intensity = style_intensity_vector(cfg.style_intensity, bank.names).to(device)
    boost = style_boost_vector(cfg.style_boost, bank.names).to(device)
    features = ExpansionFeatures(tuple(sorted(set(cfg.style_taps) | set(cfg.content_taps)))).to(device)
    stats = bank.stats(features.cpu(), cfg.style_short, luma=cfg.style_luma)
    stats = stats.to(device)
    stats_rgb = (bank.stats(features.cpu(), cfg.style_short).to(device)
                 if cfg.style_luma and cfg.style_rgb_weight > 0 else None)
    features.to(device)
    rgb_scale = torch.ones(s_count)
    if stats_rgb is not None and cfg.style_rgb_by_colour:
        colourful = bank.colourfulness(cfg.style_short)
        rgb_scale = colourful / colourful.max().clamp(min=1e-6)
    rgb_scale = rgb_scale.to(device)

    g, d = build_networks(cfg, s_count)
    g_ema = copy.deepcopy(g).eval()
    for p in g_ema.parameters():
        p.requires_grad_(False)
    g.to(device), d.to(device), g_ema.to(device)
    cuda = device.type == "cuda"
    if cuda:
        # channels_last on the 4-D weights only: per-style filter banks are 5-D (S, out, in, k, k).
        for p in (*g.parameters(), *d.parameters(), *g_ema.parameters()):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    per_style = {n for n, _ in g.named_parameters() if ".norm." in n or n == "colour"}
    cond = [p for n, p in g.named_parameters() if n in per_style]
    trunk = [p for n, p in g.named_parameters() if n not in per_style]
    opt_g = torch.optim.Adam([{"params": trunk}, {"params": cond, "lr": cfg.lr_g * cfg.cond_lr_scale}],
                             lr=cfg.lr_g, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
    start = 0
    # --resume continues a run (weights, optimisers, step); init only seeds the weights, at step 0. expand_banks
    # is the identity when the shapes already match, and makes shared filters per-style where they do not.
    source, label = (resume, "--resume") if resume is not None else (cfg.init or None, "init")
    if source is not None:
        source = Path(source)
        if not source.is_file() and not source.is_absolute() and (REPO / source).is_file():
            source = REPO / source  # a preset's init names a file in the repository, wherever the run starts
        if not source.is_file():
            raise ValueError(f"{label} {source}: no such checkpoint")
        ckpt = torch.load(source, map_location=device, weights_only=True)
        if ckpt["style_names"] != list(bank.names):
            raise ValueError(f"{label}: checkpoint styles {ckpt['style_names']} differ from the config's {bank.names}")
        # An exported teacher.pt holds the EMA generator alone (half precision): it seeds both generators,
        # and the critic starts fresh.
        ema = {k: v.float() for k, v in ckpt["generator_ema"].items()}
        g.load_state_dict(expand_banks(ckpt.get("generator", ema), g))
        g_ema.load_state_dict(expand_banks(ema, g_ema))
        if "discriminator" in ckpt:
            d.load_state_dict(ckpt["discriminator"])
        elif resume is not None:
            raise ValueError(f"--resume {resume}: an exported generator cannot be resumed (no critic or "
                             "optimiser state); pass it as init instead")
        if resume is not None:
            opt_g.load_state_dict(ckpt["opt_g"]), opt_d.load_state_dict(ckpt["opt_d"])
            start = int(ckpt["step"])
    # Linear warm-up, then cosine decay to 5% of the rate; the offset keeps a resumed run on the same curve.
    def rate(i: int) -> float:
        t = i + start
        return min(1.0, (t + 1) / max(cfg.warmup, 1)) * (
            0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, cfg.steps) / cfg.steps)))

    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, rate)
    g_train: torch.nn.Module = g
    d_train: torch.nn.Module = d
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        g_train = DDP(g, device_ids=[device.index] if cuda else None)
        d_train = DDP(d, device_ids=[device.index] if cuda else None)

    spec = DataSpec(root=cfg.data, style_refs=[[str(p) for p in r] for r in bank.refs], crop=cfg.crop,
                    content_batch=cfg.content_batch, real_batch=cfg.real_batch, clip_pairs=cfg.clip_pairs,
                    style_short=(min(300, cfg.style_short), cfg.style_short), allow_noncommercial=cfg.allow_noncommercial,
                    seed=cfg.seed + start, rank=rank)
    loader = torch.utils.data.DataLoader(TeacherBatches(spec), batch_size=None, num_workers=cfg.workers,
                                         persistent_workers=cfg.workers > 0, pin_memory=cuda)
    batches = iter(loader)
    def autocast() -> contextlib.AbstractContextManager:  # a fresh context per use: bf16 on CUDA only
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.amp else contextlib.nullcontext()

    if main:
        macs = count_macs(g.config)
        print(f"teacher: {s_count} styles ({', '.join(bank.names)}), generator {count_params(g) / 1e6:.2f} M params, "
              f"{macs / 1e9:.1f} GMAC at 640x360; discriminator {count_params(d) / 1e6:.2f} M params; "
              f"{world} process(es) on {device}")
        log_path = out / "log.csv"
        log = log_path.open("a" if start else "w", newline="")
        writer = csv.writer(log)
        columns = ["step", "loss_g", "adv", "style", "expr", "content", "colour", "grad", "tv", "temporal",
                   "clip_temporal", "local_colour", "range", "loss_d", "d_real", "d_fake", "edge", "style_rgb",
                   "seconds"]
        if not start:
            writer.writerow(columns)
    t0 = time.time()
    last = min(cfg.steps, cfg.stop_after) if cfg.stop_after > 0 else cfg.steps
    bar = tqdm(desc="teacher", dynamic_ncols=True, disable=not main, initial=start, total=cfg.steps)
    budget = TimeBudget(cfg.time_budget_min * 60.0, start) if cfg.time_budget_min > 0 and world == 1 else None
    if cfg.time_budget_min > 0 and world > 1 and main:
        # Each rank would time itself and could fit a different length: the ranks must agree on `steps`.
        tqdm.write("teacher: time_budget_min is ignored under DDP; set steps instead")
    step = start
    while step < last:
        step += 1
        bar.update(1)
        if budget is not None and (fit := budget.fit(step)) is not None:
            fit_schedule(cfg, fit, counts=("adv_start",), intervals=("adv_ramp", "save_every", "sample_every"))
            last = min(fit, cfg.stop_after) if cfg.stop_after > 0 else fit
            # The EMA's horizon (1 / (1 - decay) steps) at most a tenth of the run: a long-run decay on a short
            # run would export an average of its first, unstyled steps.
            cfg.ema_decay = min(cfg.ema_decay, 1.0 - 10.0 / fit)
            bar.total = fit
            if main:
                tqdm.write(f"teacher: {budget.seconds_per_step:.3f} s/step, {fit} steps fit "
                           f"{cfg.time_budget_min:g} min (critic from step {cfg.adv_start})")
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        content = batch["content"]
        nc = content.shape[0]
        w_c = sample_style_weights(nc, s_count, rng, p_onehot=cfg.p_onehot).to(device)
        s_c = sample_strength(nc, rng, cfg.p_full_strength).to(device)
        # Synthetic motion on the first crop: half rigid (a hand-held camera), half smooth non-rigid.
        h, w = content.shape[-2:]
        if rng.random() < 0.5:
            flow_syn = random_affine_flow(1, h, w, gen)
        else:
            flow_syn = smooth_random_flow(1, h, w, gen)
        flow_syn = flow_syn.to(device)
        parts, weights, strengths = [content, warp(content[:1], flow_syn)], [w_c, w_c[:1]], [s_c, s_c[:1]]
        has_pair = "pair" in batch
        if has_pair:
            w_p = sample_style_weights(1, s_count, rng, p_onehot=cfg.p_onehot).to(device)
            s_p = sample_strength(1, rng, cfg.p_full_strength).to(device)
            parts.append(batch["pair"])
            weights.append(w_p.expand(2, -1))
            strengths.append(s_p.expand(2, -1))
        x, wts, strength = torch.cat(parts), torch.cat(weights), torch.cat(strengths)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)

        # ---- generator step
        adv_scale = cfg.adv_weight * min(1.0, max(0.0, (step - cfg.adv_start) / max(cfg.adv_ramp, 1)))
        full = (strength[:, 0] >= 1.0)
        with autocast():
            y, raw = g_train(x, wts, strength, return_raw=True)
            with torch.no_grad():
                fx = features(grey(x) if cfg.style_luma else x)
                fx_rgb = features(x) if cfg.style_luma else fx
            fy = features(grey(y) if cfg.style_luma else y)
            # Content stays on colour features: with luminance-only content too, nothing held the chroma
            # and a luma run painted magenta/green regions by step 300.
            fy_rgb = features(y) if cfg.style_luma else fy
            target = stats.mix(wts)
            goal = strength * (wts @ intensity).unsqueeze(1)  # how far the targets go; the knob stays s
            push = wts @ boost  # (N,) a blend is pushed as hard as its styles' weighted boosts
            per_sample = push * expression_loss(fy, fx, target, goal, tuple(cfg.style_taps), cfg.style_margin,
                                                cfg.style_grid, relative=cfg.style_tile_relative)
            l_style = per_sample[full].mean() if full.any() else per_sample.new_zeros(())
            l_expr = per_sample[~full].mean() if (~full).any() else per_sample.new_zeros(())
            l_style_rgb = y.new_zeros(())
            if stats_rgb is not None:
                per_rgb = expression_loss(fy_rgb, fx_rgb, stats_rgb.mix(wts), goal, tuple(cfg.style_taps),
                                          cfg.style_margin, cfg.style_grid, relative=cfg.style_tile_relative)
                l_style_rgb = (push * (wts @ rgb_scale) * per_rgb).mean()
            l_colour = (push * expression_colour_loss(y, x, target, goal, cfg.style_margin)).mean()
            l_content = content_loss(fy_rgb, fx_rgb, tuple(cfg.content_taps))
            l_grad = gradient_loss(y, x)
            l_edge = edge_ssim_loss(y, x).mean() if cfg.edge_weight > 0 else y.new_zeros(())
            l_tv = tv_loss(y)
            l_range = (raw - raw.clamp(0.0, 1.0)).pow(2).mean()
            l_local = local_colour_loss(y, x) if cfg.local_colour_weight > 0 else y.new_zeros(())
            l_temp = temporal_loss(y[nc:nc + 1], y[:1], flow_syn)
            l_clip = (temporal_loss(y[nc + 2:nc + 3], y[nc + 1:nc + 2], batch["pair_flow"], batch["pair_mask"])
                      if has_pair else y.new_zeros(()))
            loss_g = (cfg.style_weight * l_style + cfg.expr_weight * l_expr + cfg.colour_weight * l_colour
                      + cfg.content_weight * l_content + cfg.grad_weight * l_grad + cfg.tv_weight * l_tv
                      + cfg.temporal_weight * l_temp + cfg.clip_temporal_weight * l_clip
                      + cfg.range_weight * l_range + cfg.local_colour_weight * l_local + cfg.edge_weight * l_edge
                      + cfg.style_rgb_weight * l_style_rgb)
            l_adv = y.new_zeros(())
            if adv_scale > 0 and full.any():
                d.requires_grad_(False)
                l_adv = hinge_g_loss(d(y[full], wts[full]))  # the critic's own module: no DDP sync needed
                d.requires_grad_(True)
                loss_g = loss_g + adv_scale * l_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), cfg.grad_clip)
        opt_g.step()
        sched_g.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(g_ema.parameters(), g.parameters()):
                pe.lerp_(p, 1.0 - decay)

        # ---- critic step: reference patches (one-hot) against full-strength outputs
        loss_d = d_real = d_fake = torch.zeros(())
        if adv_scale > 0 and full.any():
            real = batch["real"]
            w_real = torch.nn.functional.one_hot(batch["real_style"], s_count).float()
            fake = y[full].detach()
            with autocast():
                logits = d_train(torch.cat([real, fake]), torch.cat([w_real, wts[full]]))
                nr = real.shape[0]
                loss_d = hinge_d_loss([lg[:nr] for lg in logits], [lg[nr:] for lg in logits])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            d_real = sum(lg[:nr].mean() for lg in logits).detach() / len(logits)
            d_fake = sum(lg[nr:].mean() for lg in logits).detach() / len(logits)

        if main:
            vals = [loss_g, l_adv, l_style, l_expr, l_content, l_colour, l_grad, l_tv, l_temp, l_clip, l_local,
                    l_range, loss_d, d_real, d_fake, l_edge, l_style_rgb]
            vals = [float(v.detach()) for v in vals]
            writer.writerow([step, *[f"{v:.5f}" for v in vals], round(time.time() - t0, 1)])
            bar.set_postfix(g=f"{vals[0]:.3f}", style=f"{vals[2]:.4f}", adv=f"{vals[1]:.2f}",
                            temp=f"{vals[8]:.4f}", d=f"{vals[12]:.2f}")
            if step % cfg.sample_every == 0 or step == last:
                log.flush()
                _preview(g_ema, bank, Path(cfg.data), out / "preview.png", device)
            snapshot = cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0
            if step % cfg.save_every == 0 or step == last or snapshot:
                save_checkpoint(out / "checkpoint.pt", cfg, bank, step, g, g_ema, d, opt_g, opt_d)
            if snapshot:
                export_generator(out / f"teacher_step{step:05d}.pt", out / "checkpoint.pt")
    if main:
        log.close()
        export_generator(out / "teacher.pt", out / "checkpoint.pt")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "checkpoint.pt"
