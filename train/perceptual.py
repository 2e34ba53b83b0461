"""Feed-forward perceptual training of the student straight from the bank's references.

Style statistics (mixture of the bank's references) + content + colour + TV, on
EfficientNet-Lite0 expansion features. With the painting layout (`output = "paint"`)
two more terms come in:
- strength is trained: at strength s the style target is the s-mix of the input's own
  statistics and the style's, and a pixel term pulls the output to the input by (1 - s)^2;
- stability: the same content shifted by a few pixels, with sensor noise added, must give
  the same picture shifted. A per-frame net that passes this neither crawls nor boils.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from engines.artifact import load_artifact, save_artifact
from engines.contract import IOContract
from engines.features import ExpansionFeatures
from engines.numerics import flushed_denormals
from engines.student import StudentConfig, StudentNet, count_macs
from engines.style_losses import (
    PixelPools,
    colour_loss,
    content_loss,
    ground_weights,
    paper_mask,
    pooled_style_stats,
    shift_consistency,
    style_loss,
    towards_input,
    tv_loss,
)
from engines.temporal import temporal_loss
from train.data import (
    SHARED_DATA,
    CropSampler,
    content_images,
    load_rgb,
    resolve_style,
    sample_style_weights,
    to_tensor,
)
from train.discriminator import DiscriminatorConfig, MultiScaleDiscriminator, hinge_d_loss, hinge_g_loss
from train.face_cascade import FACE_WINDOWS, SoftCascade, face_windows, mask_box
from train.face_crops import FaceCrops, face_structure_loss
from train.grow import grow
from train.line_losses import ink_off_edges, marks_off_edges
from train.shrink import shrink
from train.teacher_data import clip_pair, clip_sequences, reference_patch
from train.teacher_losses import luma
from train.thumbs import write_thumbnails
from train.toon import parse_toon, targets, toon_loss

DEFAULT_STYLES = ("vangogh", "hokusai", "kandinsky", "monet", "klimt", "lineart", "munch",
                  "cartoon=cartoon_bach,cartoon_beach")


@dataclass
class PerceptualConfig:
    styles: list[str] = field(default_factory=lambda: list(DEFAULT_STYLES))
    out: str = "runs/perceptual"
    steps: int = 4000
    batch: int = 4
    crop: int = 224
    lr: float = 1.5e-3
    # The network: "paint" draws the frame, "residual" is the foundation's input + residual layout.
    output: str = "paint"
    enc_channels: int = 32
    body_channels: int = 96
    half_channels: int = 32
    expansion: int = 2
    blocks: int = 6
    half_blocks: int = 2
    detail_channels: int = 8
    head_channels: int = 8
    pad: int = 16
    # Defaults: the last link of the bundled model's chain (P3 in scripts/train_default.sh). Content at stride 4
    # and 8 holds faces; at stride 8 alone (weight 6) a free painter dropped the photo for a field of blobs.
    style_weight: float = 100.0
    style_taps: list[int] = field(default_factory=lambda: [0, 2, 4, 7, 10])
    content_weight: float = 30.0
    content_taps: list[int] = field(default_factory=lambda: [2, 4])
    colour_weight: float = 10.0
    tv_weight: float = 60.0
    p_onehot: float = 0.7
    # NAME=FACTOR: how much more often a one-hot batch row draws that style (the weaker styles get more steps).
    style_odds: list[str] = field(default_factory=list)
    # paint only: trained strength, and stability under small shifts plus noise.
    strength_full: float = 0.5
    strength_zero: float = 0.1
    # The style targets (statistics and pixel pools) at strength s are those of s ** strength_gamma. Below 1 the
    # halfway look carries more of the style: the critic and the line terms push only the full look, and on
    # close photos the gain at 0.5 fell to a seventh of the gain at 1.
    strength_gamma: float = 1.0
    identity_weight: float = 20.0
    # Below full strength the photo's light and dark layout in 16 px blocks holds, in proportion to 1 - strength:
    # a halfway look repaints the marks and colours over the photo's layout (a Haar cascade lost a face at 0.6 in
    # seven of eight styles that it found at full strength, and found it again under the input's coarse luma).
    halfway_weight: float = 0.0
    # The halfway term on the face crop alone: over whole photos it held close shots (large smooth areas) near the
    # photo until strength 0.7, and a slider's 0.5 looked like a faint tint there.
    halfway_faces_only: bool = False
    # Image-space distributions (sliced Wasserstein): the references' colours, and their luma gradients at
    # 1, 1/2 and 1/4 scale (the gradient-domain style term). Mean/std feature matching alone was met by a tint.
    colour_dist_weight: float = 200.0
    grad_dist_weight: float = 1000.0
    grad_dist_scales: list[int] = field(default_factory=lambda: [2, 4])  # at full scale it drew a 4 px weave
    dist_points: int = 8192
    grad_short_side: int = 360  # references at a 640x360 frame's scale, so strokes come out at the size they have there
    stable_weight: float = 30.0
    stable_shift: int = 8
    stable_noise: float = 0.02
    # Temporal term on real clip pairs (DIS flow on the input frames, occlusion-masked L1, as the warping error
    # measures it): the synthetic shifts above do not move light, parallax or a turning head.
    clip_weight: float = 0.0
    # One crop around a face joins every batch, and the face's coarse light/dark pattern is held (face_crops.py).
    face_weight: float = 0.0
    # The face crop's strength, drawn uniformly from this range instead of the batch's draw (empty: the same
    # draw): the halfway looks are where a face detector lost faces the full look kept.
    face_strengths: list[float] = field(default_factory=list)
    # NAME=SHARE: that style's references' white paper (clip art's page) counts as SHARE of them in the style
    # statistics, the colour pool and the critic's real patches, not as the half of the picture it covers: the
    # page is not a fill colour, and at half the targets it painted cartoon's fills white. 0 leaves it out.
    ground_share: list[str] = field(default_factory=list)
    face_fill: list[float] = field(default_factory=lambda: [0.3, 0.6])  # of the crop side the face fills
    face_cells: int = 0  # 0: the face pattern in 4 px blocks; N: in blocks of 1/N of the face's side
    face_by_source: bool = False  # draw each photo or clip alike, not each face (face_crops.py)
    # The stock Haar cascade, softened (face_cascade.py), held passing on the face crop's box and its neighbours:
    # at full strength the line styles redrew faces into marks the cascade no longer read (lineart lost 7 of 12).
    cascade_weight: float = 0.0
    # NAME=FACTOR: how much more often the face crop draws that style (the styles that lose faces).
    face_style_odds: list[str] = field(default_factory=list)
    # The line styles' ink goes on the photo's edges (train/line_losses.py): dark output away from edges costs.
    line_weight: float = 0.0
    line_styles: list[str] = field(default_factory=lambda: ["lineart", "cartoon"])
    line_dark: float = 0.35  # luma below which output counts as ink (at 0.35 the net dodged it with mid browns)
    # Flat fills between the photo's edges for these styles (train/line_losses.py): marks off the edges cost.
    flat_weight: float = 0.0
    flat_styles: list[str] = field(default_factory=lambda: ["lineart", "cartoon"])
    # Drawn targets for the line styles (train/toon.py): a one-hot full-strength row in NAME is held to a line
    # drawing (`lines`) or a cel (`cel`: flat fills, dark outlines) of its own photo. The terms above gave black
    # masses and white paper, never an outline.
    toon_weight: float = 0.0
    toon: list[str] = field(default_factory=lambda: ["lineart=lines", "cartoon=cel"])
    style_margin: float = 0.03
    style_grid: int = 2
    film_lr_scale: float = 2.0
    grad_clip: float = 1.0
    style_short_side: int = 400
    # A model folder with the same styles to start from: the same layout (a fine-tune); a smaller painting
    # layout, which is grown into this one painting the same frames (train/grow.py; how the teacher starts); or
    # this layout with more blocks, which is shrunk to this one's depth (train/shrink.py; smaller students).
    init: str = ""
    # A frozen teacher's model folder (the same styles) and its term: the student's output, in block means of
    # `teacher_block` px, held to the teacher's on the same batch, style blend and strength. Pure output
    # matching (`python -m train distill`) averaged every stroke the student could not place exactly into a
    # palette (gain 0.35 from T2); block means carry the teacher's layout of colour and light, and the
    # student's own style terms the strokes.
    teacher: str = ""
    teacher_weight: float = 0.0
    teacher_block: int = 8
    # Adversarial term: a two-scale patch critic (train/discriminator.py), conditioned on the style, learns the
    # references' patches at a frame's scale from the full-strength outputs; hinge loss. The statistics terms
    # count marks and colours, the critic judges how they are laid down: flat fills, closed outlines.
    adv_weight: float = 0.0
    adv_start: int = 50  # steps the critic learns alone first: a fresh critic's gradient is noise
    adv_lr: float = 2e-4
    real_batch: int = 4
    seed: int = 0
    threads: int = 2
    save_every: int = 250
    allow_noncommercial: bool = False
    data: str = str(SHARED_DATA)


def train_perceptual(cfg: PerceptualConfig) -> Path:
    with flushed_denormals():
        return _train_perceptual(cfg)


def _train_perceptual(cfg: PerceptualConfig) -> Path:
    if bool(cfg.teacher) != bool(cfg.teacher_weight):  # before the references and features load
        raise ValueError("--teacher and --teacher-weight go together: a model folder with this run's styles, "
                         "and the weight of its term")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    named = [resolve_style_refs(s, Path(cfg.data)) for s in cfg.styles]
    names = tuple(n for n, _ in named)
    if len(set(names)) != len(names):
        raise ValueError(f"style names must be unique: {names}")
    grounds = ground_shares(cfg.ground_share, names)
    features = ExpansionFeatures()
    refs = [[to_tensor(load_rgb(p, cfg.style_short_side, max_long=2 * cfg.style_short_side)) for p in paths]
            for _, paths in named]
    stats = pooled_style_stats(features, refs, grounds)

    pools = PixelPools([[to_tensor(load_rgb(p, cfg.grad_short_side)) for p in paths] for _, paths in named],
                       tuple(cfg.grad_dist_scales), grounds)
    gen = torch.Generator().manual_seed(cfg.seed)

    content = content_images(Path(cfg.data), allow_noncommercial=cfg.allow_noncommercial)
    paint = cfg.output == "paint"
    margin = cfg.stable_shift if paint else 0
    sampler = CropSampler([im for _, im in content], crop=cfg.crop + margin, seed=cfg.seed)
    face_crops = (FaceCrops([im for _, im in content], cfg.crop + margin, seed=cfg.seed, fill=tuple(cfg.face_fill),
                            sources=[name for name, _ in content] if cfg.face_by_source else None)
                  if cfg.face_weight else None)
    if cfg.cascade_weight and face_crops is None:
        raise ValueError("--cascade-weight works on the face crop: give --face-weight too")
    if cfg.halfway_weight and cfg.halfway_faces_only and face_crops is None:
        raise ValueError("--halfway-faces-only works on the face crop: give --face-weight too")
    if face_crops is not None and not len(face_crops):
        raise ValueError("--face-weight: no faces found in the training content")
    seqs = clip_sequences(Path(cfg.data)) if cfg.clip_weight else []
    if cfg.clip_weight and not seqs:
        raise ValueError("--clip-weight: no clips or frame sequences under the data folder")

    net = StudentNet(StudentConfig(num_styles=len(names), output=cfg.output, enc_channels=cfg.enc_channels,
                                   body_channels=cfg.body_channels, half_channels=cfg.half_channels,
                                   expansion=cfg.expansion, blocks=cfg.blocks, half_blocks=cfg.half_blocks,
                                   detail_channels=cfg.detail_channels, head_channels=cfg.head_channels,
                                   pad=cfg.pad))
    contract = IOContract(style_names=names)
    odds = style_odds(cfg.style_odds, names)
    face_odds = style_odds(cfg.face_style_odds, names)
    cascade = SoftCascade() if cfg.cascade_weight else None  # face_crops is there: checked above
    line_rows = [names.index(n) for n in cfg.line_styles if n in names]
    flat_rows = [names.index(n) for n in cfg.flat_styles if n in names]
    toon_rows = parse_toon(cfg.toon, names) if cfg.toon_weight else {}
    if cfg.init:
        start = load_artifact(cfg.init)
        if start.contract.style_names != names:
            raise ValueError(f"--init {cfg.init}: its styles differ from this run's")
        if replace(start.config, pad=cfg.pad) == net.config:
            net.load_state_dict(start.load_student().state_dict())
        else:
            deeper = start.config.blocks >= cfg.blocks and start.config.half_blocks >= cfg.half_blocks
            try:
                net = (shrink if deeper else grow)(start.load_student(), net.config)
            except ValueError as exc:
                raise ValueError(f"--init {cfg.init}: its layout is neither this run's, a larger one in every "
                                 f"field, nor this one with more blocks ({exc})") from exc
            tqdm.write(f"perceptual: {'shrunk' if deeper else 'grown'} from {cfg.init} "
                       f"({count_macs(start.config) / 1e9:.2f} -> {count_macs(net.config) / 1e9:.2f} GMAC a "
                       f"640x360 frame)")
    teacher = None
    if cfg.teacher:
        held = load_artifact(cfg.teacher)
        if held.contract.style_names != names or not held.config.paint:
            raise ValueError(f"--teacher {cfg.teacher}: not a painting model with this run's styles")
        teacher = held.load_student().eval().requires_grad_(False)
    critic = opt_d = None
    if cfg.adv_weight:
        critic = MultiScaleDiscriminator(DiscriminatorConfig(num_styles=len(names)))
        opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.adv_lr, betas=(0.5, 0.99))
        # Real patches at a 640x360 frame's scale and a little around it, as the strokes should come out.
        real_refs = [[(im, paper_weight(im, grounds[j]))
                      for im in (load_rgb(p, cfg.grad_short_side) for p in paths)] for j, (_, paths) in enumerate(named)]
        real_range = (round(cfg.grad_short_side * 0.8), round(cfg.grad_short_side * 1.25))
    # FiLM parameters carry everything that differs between styles; a higher rate lets styles part early
    # instead of all sharing one look.
    film = [p for n, p in net.named_parameters() if "film" in n]
    rest = [p for n, p in net.named_parameters() if "film" not in n]
    opt = torch.optim.Adam([{"params": rest}, {"params": film}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, cfg.lr * cfg.film_lr_scale],
                                                total_steps=cfg.steps, pct_start=0.05)
    provenance = {
        "recipe": "perceptual (style statistics + content + colour + TV on EfficientNet-Lite0)"
                  + (" + adversarial (two-scale patch critic)" if critic is not None else "")
                  + (f" + {cfg.teacher_block} px block means of the teacher {cfg.teacher}" if teacher is not None else "")
                  + (" + drawn targets for " + ", ".join(f"{names[r]} ({k})" for r, k in toon_rows.items())
                     if toon_rows else ""),
        "config": asdict(cfg),
        "styles": {n: [p.name for p in paths] for n, paths in named},
        "content_images": len(content),
        "macs_640x360": count_macs(net.config),
    }
    log = (out / "log.csv").open("w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "loss", "style", "content", "colour", "tv", "identity", "stable", "distributions",
                     "face", "cascade", "clip", "clip_input", "line", "halfway", "flat", "toon", "teacher", "adv", "critic",
                     "seconds"])
    t0 = time.time()
    bar = tqdm(range(1, cfg.steps + 1), desc="perceptual", dynamic_ncols=True)
    for step in bar:
        crops = sampler.sample(cfg.batch)
        if face_crops is not None:
            fcrop, fmask = face_crops.sample(1)
            crops = torch.cat([crops, fcrop])
        n = crops.shape[0]
        x = crops[:, :, : cfg.crop, : cfg.crop]
        w = sample_style_weights(n, len(names), rng, p_onehot=cfg.p_onehot, odds=odds)
        strength = sample_strengths(n, rng, cfg.strength_full, cfg.strength_zero) if paint \
            else torch.ones(n, 1)
        if face_crops is not None and face_odds:
            w[-1:] = sample_style_weights(1, len(names), rng, p_onehot=cfg.p_onehot, odds=face_odds)
        if face_crops is not None and paint and cfg.face_strengths:
            strength[-1, 0] = rng.uniform(*cfg.face_strengths)
        y = net(x, w, strength)
        kinds: list[str | None] = [None] * n
        if toon_rows:  # one-hot, full-strength rows of a drawn style
            kinds = [toon_rows.get(int(w[i].argmax())) if float(w[i].max()) >= 0.999 and float(strength[i, 0]) >= 1.0
                     else None for i in range(n)]
        drawn = targets(x, kinds) if any(kinds) else x
        with torch.no_grad():
            fc = features(x)
            # A drawn row's content is its target: the photo's features ask for its texture and shading back.
            fcontent = fc
            if any(kinds):
                rows = [i for i, k in enumerate(kinds) if k is not None]
                fcontent = {tap: f.clone() for tap, f in fc.items()}
                for tap, f in features(drawn[rows]).items():
                    fcontent[tap][rows] = f
        fy = features(y)
        target = stats.mix(w)
        styled = strength ** cfg.strength_gamma  # how much of the style the targets carry at this strength
        if paint:
            target = towards_input(target, fc, x, styled)
        ls = style_loss(fy, target, tuple(cfg.style_taps), margin=cfg.style_margin, grid=cfg.style_grid)
        lc = content_loss(fy, fcontent, tuple(cfg.content_taps))
        lcol, ltv = colour_loss(y, target, margin=cfg.style_margin), tv_loss(y)
        loss = cfg.style_weight * ls + cfg.content_weight * lc + cfg.colour_weight * lcol + cfg.tv_weight * ltv
        ldist = torch.zeros(())
        if cfg.colour_dist_weight or cfg.grad_dist_weight:
            lcd, lgd = pools.loss(y, x, w, styled, cfg.dist_points, gen)
            ldist = cfg.colour_dist_weight * lcd + cfg.grad_dist_weight * lgd
            loss = loss + ldist
        lline = torch.zeros(())
        if cfg.line_weight and line_rows:
            lline = ink_off_edges(y, x, w[:, line_rows].sum(1) * strength[:, 0], cfg.line_dark)
            loss = loss + cfg.line_weight * lline
        lflat = torch.zeros(())
        if cfg.flat_weight and flat_rows:
            lflat = marks_off_edges(y, x, w[:, flat_rows].sum(1) * strength[:, 0])
            loss = loss + cfg.flat_weight * lflat
        ltoon = torch.zeros(())
        if any(kinds):
            ltoon = toon_loss(y, drawn, kinds)
            loss = loss + cfg.toon_weight * ltoon
        lface = lcasc = lclip = lclip_in = torch.zeros(())
        if face_crops is not None:
            lface = face_structure_loss(y[-1:], x[-1:], fmask[:, :, : cfg.crop, : cfg.crop], cells=cfg.face_cells)
            loss = loss + cfg.face_weight * lface
        if cascade is not None and (box := mask_box(fmask[0, :, : cfg.crop, : cfg.crop])) is not None:
            wins = face_windows(torch.cat([y[-1:], x[-1:]]), box, FACE_WINDOWS, rng)
            lcasc = cascade.loss(wins[:FACE_WINDOWS], wins[FACE_WINDOWS:])
            loss = loss + cfg.cascade_weight * lcasc
        if seqs:
            pair = clip_pair(rng, seqs, cfg.crop)
            # Both frames in one style at full strength, where a flicker shows most.
            wp = sample_style_weights(1, len(names), rng, p_onehot=cfg.p_onehot).expand(2, -1)
            yp = net(pair["pair"], wp, torch.ones(2, 1))
            lclip = temporal_loss(yp[1:], yp[:1], pair["pair_flow"], pair["pair_mask"])
            with torch.no_grad():  # the input's own error under the same flow: the floor, for the log
                lclip_in = temporal_loss(pair["pair"][1:], pair["pair"][:1], pair["pair_flow"], pair["pair_mask"])
            loss = loss + cfg.clip_weight * lclip
        lid = lst = lhw = torch.zeros(())
        if paint:
            lid = ((1.0 - strength)[:, :, None, None] ** 2 * (y - x).abs()).mean()
            lst = shift_consistency(lambda v, w=w, s=strength: net(v, w, s), crops, y, cfg.crop, rng, cfg.stable_noise)
            loss = loss + cfg.identity_weight * lid + cfg.stable_weight * lst
            if cfg.halfway_weight:
                k = n - 1 if cfg.halfway_faces_only else 0  # the face crop is the batch's last row
                lhw = ((1.0 - strength[k:])[:, :, None, None] * (block_luma(y[k:]) - block_luma(x[k:])).abs()).mean()
                loss = loss + cfg.halfway_weight * lhw
        lteach = torch.zeros(())
        if teacher is not None:
            with torch.no_grad():
                yt = teacher(x, w, strength)
            per_row = (F.avg_pool2d(y, cfg.teacher_block) - F.avg_pool2d(yt, cfg.teacher_block)).abs().mean((1, 2, 3))
            # The teacher's line styles are the old masses: a drawn style's share of a row is left to its target.
            own = 1.0 - w[:, list(toon_rows)].sum(1) if toon_rows else torch.ones(n)
            lteach = (per_row * own).mean()
            loss = loss + cfg.teacher_weight * lteach
        ladv, lcritic = torch.zeros(()), torch.zeros(())
        full = strength[:, 0] >= 1.0
        if critic is not None and bool(full.any()):
            if step > cfg.adv_start:
                critic.requires_grad_(False)
                ladv = hinge_g_loss(critic(y[full], w[full]))
                critic.requires_grad_(True)
                loss = loss + cfg.adv_weight * ladv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # A 5x FiLM rate once drove a scale to -1 mid-run: every feature died and the net fell back
        # to the identity for good. Clipping keeps one bad batch from doing that.
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if critic is not None and bool(full.any()):  # after the generator's step: its graph read these weights
            lcritic = critic_step(critic, opt_d, y[full].detach(), w[full], real_refs, real_range, cfg, rng)
        bar.set_postfix(loss=f"{loss.item():.3f}", style=f"{ls.item():.4f}", content=f"{lc.item():.3f}")
        writer.writerow([step, loss.item(), ls.item(), lc.item(), lcol.item(), ltv.item(), lid.item(), lst.item(),
                         ldist.item(), lface.item(), lcasc.item(), lclip.item(), lclip_in.item(), lline.item(), lhw.item(),
                         lflat.item(), ltoon.item(), lteach.item(), ladv.item(), lcritic.item(), round(time.time() - t0, 1)])
        if step % cfg.save_every == 0 or step == cfg.steps:
            log.flush()
            provenance["steps_done"] = step
            save_artifact(net, contract, out / "model", provenance=provenance, export_onnx=step == cfg.steps)
            if critic is not None:  # `python -m train distill --critic` starts its critic from this one
                save_critic(out / "critic.pt", critic)
            # Snapshots too, so a late collapse never costs the whole run.
            save_artifact(net, contract, out / "snapshots" / f"step{step:06d}", provenance=provenance,
                          export_onnx=False)
    log.close()
    write_thumbnails([paths[0] for _, paths in named], names, out / "model" / "thumbs")
    return out / "model"


def critic_step(critic: MultiScaleDiscriminator, opt_d: torch.optim.Optimizer, fake: torch.Tensor,
                fake_w: torch.Tensor, refs: list[list], short_range: tuple[int, int], cfg: PerceptualConfig,
                rng: random.Random) -> torch.Tensor:
    """One hinge step of the critic: reference patches (one-hot styles) are real, the full-strength outputs fake.
    `refs[s]` holds (picture, paper weight) pairs (`paper_weight`)."""
    styles = [rng.randrange(len(refs)) for _ in range(cfg.real_batch)]
    real = torch.stack([real_patch(rng, refs[s], fake.shape[-1], short_range) for s in styles])
    real_w = torch.nn.functional.one_hot(torch.tensor(styles), len(refs)).float()
    logits = critic(torch.cat([real, fake]), torch.cat([real_w, fake_w]))
    nr = real.shape[0]
    ld = hinge_d_loss([lg[:nr] for lg in logits], [lg[nr:] for lg in logits])
    opt_d.zero_grad(set_to_none=True)
    ld.backward()
    opt_d.step()
    return ld.detach()


def paper_weight(img: Image.Image, share: float | None) -> float | None:
    """The weight a paper pixel of this reference gets for its paper to be `share` of it (None: 1)."""
    w = ground_weights(to_tensor(img), share)
    return None if w is None else float(w.min())


def real_patch(rng: random.Random, refs: list[tuple[Image.Image, float | None]], crop: int,
               short_range: tuple[int, int], tries: int = 20) -> torch.Tensor:
    """A reference patch for the critic. Where the paper is weighted down, a patch is kept with the probability
    of its mean pixel weight, so the critic sees the page as often as the statistics count it."""
    for _ in range(tries):
        img, weight = rng.choice(refs)
        patch = reference_patch(rng, img, crop, short_range)
        if weight is None:
            return patch
        paper = float(paper_mask(patch).float().mean())
        if rng.random() < 1 - paper * (1 - weight):
            return patch
    return patch


def ground_shares(specs: list[str], names: tuple[str, ...]) -> tuple[float | None, ...]:
    """["cartoon=0.15", ...] -> one paper share per style (None where not named)."""
    shares = named_values(specs, names, "--ground-share", "SHARE")
    for name, share in shares.items():
        if not 0 <= share < 1:
            raise ValueError(f"--ground-share {name}={share}: the share must be in [0, 1)")
    return tuple(shares.get(n) for n in names)


def named_values(specs: list[str], names: tuple[str, ...], flag: str, what: str) -> dict[str, float]:
    """["monet=2", ...] -> {"monet": 2.0}, each NAME one of `names` (for the per-style options)."""
    values = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or name not in names:
            raise ValueError(f"{flag} takes NAME={what} with NAME one of {', '.join(names)}; got {spec!r}")
        values[name] = float(value)
    return values


def save_critic(path: Path, critic: MultiScaleDiscriminator) -> None:
    c = critic.config
    tmp = path.with_suffix(".tmp")
    torch.save({"config": {"d_scales": c.scales, "d_channels": c.channels, "d_layers": c.layers},
                "discriminator": critic.state_dict()}, tmp)
    tmp.replace(path)


def style_odds(specs: list[str], names: tuple[str, ...]) -> list[float] | None:
    """["monet=2", ...] -> one factor per style (1 where not named); None when nothing is named."""
    if not specs:
        return None
    factors = named_values(specs, names, "--style-odds", "FACTOR")
    for name, factor in factors.items():
        if factor <= 0:
            raise ValueError(f"--style-odds {name}={factor}: the factor must be above 0")
    return [factors.get(n, 1.0) for n in names]


def resolve_style_refs(spec: str, root: Path) -> tuple[str, list[Path]]:
    """A style spec, or NAME=REF,REF,... for one style fused from several references."""
    name, sep, rest = spec.partition("=")
    if sep and "," in rest:
        return name, [resolve_style(r, root)[1] for r in rest.split(",")]
    n, p = resolve_style(spec, root)
    return n, [p]


def block_luma(img: torch.Tensor, block: int = 16) -> torch.Tensor:
    """Luma in block x block means: the light and dark layout a viewer (and a face detector) reads a scene by."""
    return torch.nn.functional.avg_pool2d(luma(img), block)


def sample_strengths(n: int, rng: random.Random, p_full: float, p_zero: float) -> torch.Tensor:
    """(n, 1): 1 with probability p_full, 0 with p_zero, else uniform: every strength is trained."""
    out = []
    for _ in range(n):
        r = rng.random()
        out.append([1.0 if r < p_full else 0.0 if r < p_full + p_zero else rng.random()])
    return torch.tensor(out)
