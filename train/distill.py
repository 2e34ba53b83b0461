"""Distil the GAN teacher into the live student: `python -m train distill --teacher CKPT --preset PRESET.toml`.

The frozen teacher (eval mode, no grad) labels every batch: random style mixtures, strengths,
content crops and real clip pairs. The student (engines.student.StudentNet, the network every
back-end runs) learns to match it with:
- L1 plus perceptual (EfficientNet-Lite0 expansion features) output matching;
- texture statistics: per-tile feature mean/std against the teacher output's, which asks for the
  teacher's texture without asking for its exact phase (under L1 alone a stroke the student cannot
  place exactly averages away, and the student learned palettes only);
- an adversarial term from a critic initialised from the teacher's (reference patches are real);
- the teacher's temporal terms: synthetic motion with an exact flow, and real clip pairs with
  DIS flow and occlusion masks.
The ablation twin (same size, same batches, same teacher labels, no temporal terms) trains in the
same run, so the table can show what the temporal terms buy at no extra teacher cost.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engines.artifact import load_artifact, save_artifact
from engines.contract import IOContract
from engines.features import ExpansionFeatures, mean_std
from engines.numerics import flushed_denormals
from engines.student import StudentConfig, StudentNet
from engines.student import count_macs as student_macs
from engines.style_losses import grid_tiles
from engines.temporal import temporal_loss, warp
from train.budget import TimeBudget, fit_schedule
from train.data import SHARED_DATA, sample_style_weights
from train.discriminator import DiscriminatorConfig, MultiScaleDiscriminator, hinge_d_loss, hinge_g_loss
from train.flow import random_affine_flow, smooth_random_flow
from train.settings import load_settings, sample_strength
from train.teacher_checkpoint import load_teacher, stylizer_macs
from train.teacher_data import DataSpec, TeacherBatches
from train.teacher_net import count_params
from train.thumbs import write_thumbnails


@dataclass
class DistillConfig:
    out: str = "runs/distill"
    data: str = str(SHARED_DATA)
    allow_noncommercial: bool = False
    steps: int = 1500
    # > 0: fit the run into this many minutes (train/budget.py); the critic start and saves scale with it
    time_budget_min: float = 0.0
    crop: int = 192
    content_batch: int = 4
    real_batch: int = 4
    clip_pairs: bool = True
    # the student (engines.student.StudentConfig fields)
    enc_channels: int = 32
    body_channels: int = 64
    half_channels: int = 16
    expansion: int = 2
    blocks: int = 6
    half_blocks: int = 0
    # "paint" for a painting student (engines/student.py), as the bundled one, from a painting teacher
    output: str = "residual"
    detail_channels: int = 8
    head_channels: int = 8
    pad: int = 0
    init: str = ""  # a student artifact to start from (matching FiLM rows are copied by style name)
    # the twin's own start ("" = init): the previous run's twin, so that a chain of runs ablates the temporal
    # terms over the whole chain, not just its last link (a twin warm-started from a steadied student
    # inherits that steadiness)
    ablation_init: str = ""
    lr: float = 1e-3
    lr_d: float = 1e-4
    grad_clip: float = 1.0
    # loss weights
    l1_weight: float = 10.0
    perceptual_weight: float = 2.0
    perceptual_taps: list[int] = field(default_factory=lambda: [0, 2, 4, 7])
    texture_weight: float = 0.0  # per-tile feature statistics against the teacher's output
    texture_taps: list[int] = field(default_factory=lambda: [0, 2, 4])
    texture_grid: int = 4
    adv_weight: float = 0.05
    adv_start: int = 300
    temporal_weight: float = 20.0
    clip_temporal_weight: float = 20.0
    p_full_strength: float = 0.7
    p_onehot: float = 0.5
    ablate_temporal: bool = True  # also train the same-size twin without the temporal terms
    # More students in the same run, on the same batches and teacher labels (the look/speed frontier):
    # "NAME:KEY=VALUE,..." changes the main student's layout (engines.student.StudentConfig fields), e.g.
    # "m:blocks=3,half_blocks=1"; each starts from `init` where shapes match and is written to OUT/NAME.
    sizes: list[str] = field(default_factory=list)
    seed: int = 0
    threads: int = 2
    workers: int = 1
    device: str = "auto"
    save_every: int = 250

    @classmethod
    def from_preset(cls, preset: str | Path | None, overrides: list[str] = ()) -> DistillConfig:
        return load_settings(cls, "distill", preset, overrides)

    def student_config(self, num_styles: int) -> StudentConfig:
        return StudentConfig(num_styles=num_styles, enc_channels=self.enc_channels, body_channels=self.body_channels,
                             half_channels=self.half_channels, expansion=self.expansion, blocks=self.blocks,
                             half_blocks=self.half_blocks, output=self.output, detail_channels=self.detail_channels,
                             head_channels=self.head_channels, pad=self.pad)


def init_from_artifact(net: StudentNet, path: str | Path, names: tuple[str, ...]) -> list[str]:
    """Copy a trained student's weights; FiLM rows go by style name (new styles start at the identity)."""
    art = load_artifact(path)
    if art.config.output != net.config.output:
        raise ValueError(f"{path}: a {art.config.output!r} student cannot start a {net.config.output!r} one")
    src = art.load_student()
    old_names = art.contract.style_names
    state = net.state_dict()
    copied = []
    for key, value in src.state_dict().items():
        if key not in state:
            continue
        if "film" in key:  # (S, C) per-style rows (a painter's last row is its identity, for strength 0)
            if state[key].shape[1] != value.shape[1]:
                continue
            for i, name in enumerate(names):
                if name in old_names:
                    state[key][i] = value[old_names.index(name)]
            if net.config.paint:
                state[key][-1] = value[-1]
            copied.append(key)
        elif state[key].shape == value.shape:
            state[key] = value
            copied.append(key)
    net.load_state_dict(state)
    return copied


def _perceptual(features: ExpansionFeatures, fy: dict[int, torch.Tensor], ft: dict[int, torch.Tensor],
                taps: list[int]) -> torch.Tensor:
    """Relative L1 between student and teacher expansion features, averaged over taps."""
    return sum(F.l1_loss(fy[k], ft[k]) / ft[k].abs().mean().clamp_min(1e-6) for k in taps) / len(taps)


def texture_loss(fy: dict[int, torch.Tensor], ft: dict[int, torch.Tensor], taps: list[int],
                 grid: int) -> torch.Tensor:
    """Per-tile channel mean/std of the student's features against the teacher's, each tap normalised by
    the teacher's size, averaged over taps. 0 iff every tile's statistics match; blind to where in a
    tile a stroke lies, so a texture the student cannot place exactly still counts as present."""
    total = fy[taps[0]].new_zeros(())
    for k in taps:
        for ry, rt in zip(grid_tiles(fy[k], grid), grid_tiles(ft[k], grid)):
            mu, sigma = mean_std(ry)
            tmu, tsigma = mean_std(rt)
            norm = (tmu.pow(2).mean(1) + tsigma.pow(2).mean(1)).clamp_min(1e-8)
            total = total + (((mu - tmu).pow(2).mean(1) + (sigma - tsigma).pow(2).mean(1)) / norm).mean()
    return total / (len(taps) * grid * grid)


def size_configs(cfg: DistillConfig, num_styles: int) -> list[tuple[str, StudentConfig]]:
    """`sizes` -> (name, layout) pairs, each the main student's layout with its changes."""
    base = cfg.student_config(num_styles)
    out = []
    for spec in cfg.sizes:
        name, sep, rest = spec.partition(":")
        if not sep or not name or name in ("model", "ablation") or "/" in name:
            raise ValueError(f"sizes: {spec!r} is not NAME:KEY=VALUE,... (NAME not model or ablation)")
        changes: dict[str, object] = {}
        for kv in filter(None, rest.split(",")):
            key, eq, value = kv.partition("=")
            if not eq or key not in StudentConfig.__dataclass_fields__ or key == "num_styles":
                raise ValueError(f"sizes: {kv!r} in {spec!r} is not a student layout field=value")
            changes[key] = type(getattr(base, key))(value)
        out.append((name, dataclasses.replace(base, **changes)))
    return out


class _Student:
    """One student with its optimiser and schedule: the main one, its ablation twin, and any other sizes.
    `sub` is the folder it is written to under OUT."""

    def __init__(self, cfg: DistillConfig, net: StudentNet, temporal: bool, sub: str) -> None:
        self.net, self.temporal, self.sub = net, temporal, sub
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, cfg.steps) / cfg.steps)))


def train_distill(cfg: DistillConfig, teacher_path: str | Path, critic_path: str | Path | None = None) -> Path:
    with flushed_denormals():
        return _train_distill(cfg, teacher_path, critic_path)


def _train_distill(cfg: DistillConfig, teacher_path: str | Path, critic_path: str | Path | None = None) -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    teacher = load_teacher(teacher_path, Path(cfg.data))
    teacher.net.to(device).eval()
    names = teacher.style_names
    s_count = len(names)
    contract = IOContract(style_names=names)
    students = [_Student(cfg, StudentNet(cfg.student_config(s_count)).to(device), temporal=True, sub="model")]
    if cfg.ablate_temporal:
        students.append(_Student(cfg, StudentNet(cfg.student_config(s_count)).to(device), temporal=False,
                                 sub="ablation"))
    sizes = size_configs(cfg, s_count)
    students += [_Student(cfg, StudentNet(c).to(device), temporal=True, sub=name) for name, c in sizes]
    for st in students:
        start = cfg.ablation_init if not st.temporal and cfg.ablation_init else cfg.init
        if start:
            init_from_artifact(st.net, start, names)

    critic = MultiScaleDiscriminator(DiscriminatorConfig(num_styles=s_count))
    if critic_path:
        ckpt = torch.load(critic_path, map_location="cpu", weights_only=True)
        critic = MultiScaleDiscriminator(DiscriminatorConfig(
            num_styles=s_count, scales=ckpt["config"]["d_scales"], channels=ckpt["config"]["d_channels"],
            layers=ckpt["config"]["d_layers"]))
        critic.load_state_dict(ckpt["discriminator"])
    critic.to(device)
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=(0.5, 0.99))
    features = ExpansionFeatures(tuple(sorted(set(cfg.perceptual_taps) | set(cfg.texture_taps)))).to(device)

    spec = DataSpec(root=cfg.data, style_refs=[[str(p) for p in r] for r in teacher.style_refs], crop=cfg.crop,
                    content_batch=cfg.content_batch, real_batch=cfg.real_batch, clip_pairs=cfg.clip_pairs,
                    allow_noncommercial=cfg.allow_noncommercial, seed=cfg.seed)
    batches = iter(torch.utils.data.DataLoader(TeacherBatches(spec), batch_size=None, num_workers=cfg.workers,
                                               persistent_workers=cfg.workers > 0))
    t_macs, s_macs = stylizer_macs(teacher.net), student_macs(students[0].net.config)
    provenance = {
        "recipe": "distilled from the GAN teacher (L1 + perceptual + adversarial + temporal)",
        "config": asdict(cfg),
        "teacher": {"path": str(teacher_path), "step": teacher.step, "macs_640x360": t_macs,
                    "params": count_params(teacher.net)},
        "styles": {n: [Path(p).name for p in refs] for n, refs in zip(names, teacher.style_refs)},
        "macs_640x360": s_macs,
        "params": count_params(students[0].net),
    }
    print(f"distill: {s_count} styles ({', '.join(names)}); teacher {t_macs / 1e9:.1f} GMAC, "
          f"{count_params(teacher.net) / 1e6:.2f} M params; student {s_macs / 1e9:.2f} GMAC, "
          f"{count_params(students[0].net) / 1e6:.3f} M params ({t_macs / s_macs:.0f}x fewer MACs)"
          + ("; with the no-temporal ablation twin" if cfg.ablate_temporal else "")
          + "".join(f"; size {n} {student_macs(c) / 1e9:.2f} GMAC" for n, c in sizes))

    log = (out / "log.csv").open("w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "student", "l1", "perceptual", "texture", "adv", "temporal", "clip_temporal", "ablation",
                     "loss_d", "seconds", *(f"loss_{n}" for n, _ in sizes)])
    t0 = time.time()
    bar = tqdm(desc="distill", dynamic_ncols=True, total=cfg.steps)
    budget = TimeBudget(cfg.time_budget_min * 60.0, 0) if cfg.time_budget_min > 0 else None
    step = 0
    while step < cfg.steps:
        step += 1
        bar.update(1)
        if budget is not None and (fit := budget.fit(step)) is not None:
            fit_schedule(cfg, fit, counts=("adv_start",), intervals=("save_every",))
            bar.total = fit
            tqdm.write(f"distill: {budget.seconds_per_step:.3f} s/step, {fit} steps fit {cfg.time_budget_min:g} min")
        batch = {k: v.to(device) for k, v in next(batches).items()}
        content = batch["content"]
        nc = content.shape[0]
        h, w = content.shape[-2:]
        flow_syn = (random_affine_flow(1, h, w, gen) if rng.random() < 0.5 else smooth_random_flow(1, h, w, gen))
        flow_syn = flow_syn.to(device)
        w_c = sample_style_weights(nc, s_count, rng, p_onehot=cfg.p_onehot).to(device)
        s_c = sample_strength(nc, rng, cfg.p_full_strength).to(device)
        parts, weights, strengths = [content, warp(content[:1], flow_syn)], [w_c, w_c[:1]], [s_c, s_c[:1]]
        has_pair = "pair" in batch
        if has_pair:
            parts.append(batch["pair"])
            weights.append(sample_style_weights(1, s_count, rng, p_onehot=cfg.p_onehot).to(device).expand(2, -1))
            strengths.append(sample_strength(1, rng, cfg.p_full_strength).to(device).expand(2, -1))
        x, wts, strength = torch.cat(parts), torch.cat(weights), torch.cat(strengths)
        with torch.no_grad():
            target = teacher(x, wts, strength)
            ft = features(target)
        full = strength[:, 0] >= 1.0
        use_adv = step > cfg.adv_start and cfg.adv_weight > 0 and bool(full.any())

        logs: list[dict[str, float]] = []
        fake_for_critic = None
        for st in students:
            st.net.train()
            y = st.net(x, wts, strength)
            fy = features(y)
            l1 = F.l1_loss(y, target)
            lp = _perceptual(features, fy, ft, cfg.perceptual_taps)
            l_tex = (texture_loss(fy, ft, cfg.texture_taps, cfg.texture_grid) if cfg.texture_weight > 0
                     else y.new_zeros(()))
            loss = cfg.l1_weight * l1 + cfg.perceptual_weight * lp + cfg.texture_weight * l_tex
            l_temp = temporal_loss(y[nc:nc + 1], y[:1], flow_syn)
            l_clip = (temporal_loss(y[nc + 2:nc + 3], y[nc + 1:nc + 2], batch["pair_flow"], batch["pair_mask"])
                      if has_pair else y.new_zeros(()))
            if st.temporal:
                loss = loss + cfg.temporal_weight * l_temp + cfg.clip_temporal_weight * l_clip
            l_adv = y.new_zeros(())
            if use_adv:
                critic.requires_grad_(False)
                l_adv = hinge_g_loss(critic(y[full], wts[full]))
                critic.requires_grad_(True)
                loss = loss + cfg.adv_weight * l_adv
            st.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(st.net.parameters(), cfg.grad_clip)
            st.opt.step()
            st.sched.step()
            if fake_for_critic is None:
                fake_for_critic = y[full].detach()
            logs.append({"loss": float(loss.detach()), "l1": float(l1.detach()), "perceptual": float(lp.detach()),
                         "adv": float(l_adv.detach()), "texture": float(l_tex.detach()),
                         "temporal": float(l_temp.detach()),
                         "clip": float(l_clip.detach())})

        loss_d = 0.0
        if use_adv and fake_for_critic is not None:
            real = batch["real"]
            w_real = F.one_hot(batch["real_style"], s_count).float()
            logits = critic(torch.cat([real, fake_for_critic]), torch.cat([w_real, wts[full]]))
            nr = real.shape[0]
            ld = hinge_d_loss([lg[:nr] for lg in logits], [lg[nr:] for lg in logits])
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            loss_d = float(ld.detach())

        by_sub = {st.sub: log_row for st, log_row in zip(students, logs)}
        main = by_sub["model"]
        ablation = by_sub["ablation"]["loss"] if "ablation" in by_sub else float("nan")
        writer.writerow([step, f"{main['loss']:.5f}", f"{main['l1']:.5f}", f"{main['perceptual']:.5f}",
                         f"{main['texture']:.5f}", f"{main['adv']:.5f}", f"{main['temporal']:.5f}",
                         f"{main['clip']:.5f}", f"{ablation:.5f}", f"{loss_d:.5f}", round(time.time() - t0, 1),
                         *(f"{by_sub[n]['loss']:.5f}" for n, _ in sizes)])
        bar.set_postfix(l1=f"{main['l1']:.4f}", perc=f"{main['perceptual']:.3f}", tex=f"{main['texture']:.3f}",
                        temp=f"{main['temporal']:.4f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            log.flush()
            last = step == cfg.steps
            for st in students:
                st.net.eval()
                prov = {**provenance, "config": asdict(cfg), "steps_done": step, "temporal_terms": st.temporal,
                        "macs_640x360": student_macs(st.net.config), "params": count_params(st.net)}
                save_artifact(st.net.cpu(), contract, out / st.sub, provenance=prov, export_onnx=last)
                st.net.to(device)
    log.close()
    for sub in ("model", *(n for n, _ in sizes)):  # the folders `realtime serve --engine` may take
        write_thumbnails([refs[0] for refs in teacher.style_refs], names, out / sub / "thumbs")
    return out / "model"
