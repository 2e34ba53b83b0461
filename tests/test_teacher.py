"""The GAN teacher: losses with known answers, its networks, and real runs of the loop on generated data.

The runs use the `teacher_tiny` preset on a generated data folder (content photos, two style
references, a short moving sequence), so they pass on a fresh clone without ../shared.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engines.features import ExpansionFeatures
from engines.style_losses import StyleStats, pooled_style_stats, style_stats
from engines.temporal import temporal_loss, warp
from tests.traindata import make_data_root
from train.budget import TimeBudget
from train.discriminator import DiscriminatorConfig, MultiScaleDiscriminator, hinge_d_loss
from train.flow import random_affine_flow, smooth_random_flow
from train.metrics import edge_ssim
from train.teacher import StyleBank, TeacherConfig, style_boost_vector, style_intensity_vector, train_teacher
from train.teacher_checkpoint import load_teacher
from train.teacher_losses import (
    edge_ssim_loss,
    expression_loss,
    gradient_loss,
    grey,
    local_colour_loss,
    luma,
)
from train.teacher_net import TeacherNet, TeacherNetConfig, count_macs, expand_banks

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def features() -> ExpansionFeatures:
    return ExpansionFeatures()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_root(tmp_path_factory.mktemp("teacher_data"))


# ----------------------------------------------------------------------------- losses with known answers


def test_style_loss_is_zero_for_identical_statistics(features: ExpansionFeatures) -> None:
    img = torch.rand(1, 3, 96, 96)
    stats = style_stats(features, [img[0], torch.rand(3, 96, 96)])
    with torch.no_grad():
        f = features(img)
    one = torch.ones(1, 1)
    assert expression_loss(f, f, stats.mix(torch.tensor([[1.0, 0.0]])), one, features.taps).item() < 1e-6
    assert expression_loss(f, f, stats.mix(torch.tensor([[0.0, 1.0]])), one, features.taps).item() > 1e-3
    # Strength 0 asks for the content's own statistics: the identity scores 0 whatever the style.
    zero = torch.zeros(1, 1)
    assert expression_loss(f, f, stats.mix(torch.tensor([[0.0, 1.0]])), zero, features.taps, grid=2).item() < 1e-6


def test_temporal_loss_is_zero_for_a_consistent_pair_under_a_known_warp() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 64)
    for fl in (random_affine_flow(2, 48, 64, g), smooth_random_flow(2, 48, 64, g)):
        # A per-pixel affine colour transform commutes with (bilinear) warping exactly.
        def stylize(im: torch.Tensor) -> torch.Tensor:
            mix = torch.tensor([[0.5, 0.3, 0.1], [0.1, 0.6, 0.2], [0.2, 0.1, 0.4]])
            return torch.einsum("ij,njhw->nihw", mix, im) + 0.1

        consistent = temporal_loss(stylize(warp(x, fl)), stylize(x), fl)
        assert consistent.item() < 1e-6
        flicker = temporal_loss(stylize(warp(x, fl)) + 0.1 * torch.rand_like(x), stylize(x), fl)
        assert flicker.item() > 0.02


def test_gradient_loss_is_zero_for_identical_edges() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert gradient_loss(x, x).item() == 0.0
    # A uniform colour shift keeps every gradient and edge.
    assert gradient_loss(x * 0.5 + 0.25, x * 0.5 + 0.25 + 0.1).item() < 1e-6
    assert gradient_loss(torch.full_like(x, 0.5), x).item() > 0.05


def test_edge_ssim_loss_is_the_evals_edge_measure_and_charges_strokes_on_flat_content() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    assert edge_ssim_loss(x, x).tolist() == [0.0, 0.0]
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    loss = edge_ssim_loss(y, x)
    # The same number the eval reports (float32 here against its float64), and a finite gradient.
    for i in range(2):
        assert loss[i].item() == pytest.approx(1.0 - edge_ssim(x[i : i + 1], y[i : i + 1].detach()), abs=1e-4)
    loss.sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    flat = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    edge_ssim_loss(flat, flat.detach()).sum().backward()
    assert torch.isfinite(flat.grad).all()  # sqrt at a zero gradient magnitude: no NaN
    # The gradient term leaves fine strokes on a flat wall nearly free; this term charges them.
    wall = torch.full((1, 3, 64, 64), 0.3)
    wall[..., 32:] = 0.8
    strokes = wall.clone()
    strokes[..., 8:24, 4:28] += 0.08 * torch.sign(torch.sin(torch.arange(24.0) * 2.1))
    blurred = torch.nn.functional.avg_pool2d(wall, 15, 1, 7, count_include_pad=False)
    assert gradient_loss(strokes, wall).item() < 0.25 * gradient_loss(blurred, wall).item()
    assert edge_ssim_loss(strokes, wall).item() > 0.1


def test_local_colour_loss_allows_palettes_and_punishes_blobs() -> None:
    content = torch.rand(2, 3, 64, 64)
    palette = torch.tensor([[0.5, 0.2, 0.1], [0.1, 0.7, 0.1], [0.2, 0.0, 0.3]])
    recoloured = torch.einsum("ij,njhw->nihw", palette, content) + 0.1  # a global colour map
    # ~1e-5 is left by the ridge term that keeps flat crops stable; the blob costs 100x more.
    assert local_colour_loss(recoloured, content).item() < 5e-5
    assert local_colour_loss(content, content).item() < 5e-5
    blob = recoloured.clone()
    blob[:, :, 8:40, 8:40] += 0.5  # one bright patch
    assert local_colour_loss(blob, content).item() > 100 * local_colour_loss(recoloured, content).item()


def test_luminance_statistics_ignore_colour(features: ExpansionFeatures) -> None:
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    swapped = img[:, [2, 0, 1]]  # same picture, other colours
    lum = grey(img)
    # Recolouring that keeps luminance keeps the luminance features exactly.
    recoloured = lum + (img - lum) * 0.3
    with torch.no_grad():
        # Up to rounding: grey() of the recoloured image differs from lum by an ulp (6e-8), which the network
        # amplifies to about 1e-5 (the features reach 6); a real colour leak moves them by whole units.
        assert torch.allclose(features(grey(recoloured))[4], features(lum)[4], atol=1e-4)
        assert not torch.allclose(features(grey(swapped))[4], features(lum)[4], atol=1e-3)


def test_fused_style_pools_the_references_statistics(features: ExpansionFeatures) -> None:
    a, b = torch.rand(3, 64, 64) * 0.5, torch.rand(3, 64, 64) * 0.5 + 0.5
    pooled = pooled_style_stats(features, [[a, b]])
    both = style_stats(features, [torch.cat([a, b], dim=2)])  # one image holding both references
    assert torch.allclose(pooled.rgb_mu, both.rgb_mu, atol=1e-5)
    assert torch.allclose(pooled.rgb_sigma, both.rgb_sigma, atol=1e-4)


def test_discriminator_hinge_and_conditioning() -> None:
    d = MultiScaleDiscriminator(DiscriminatorConfig(num_styles=3, channels=8, layers=2))
    x = torch.rand(2, 3, 64, 64)
    outs = d(x, torch.eye(3)[:2])
    assert len(outs) == 2 and outs[1].shape[-1] < outs[0].shape[-1]
    # Projection: the logits are linear in the style weights (weights summing to 1 share psi).
    d.eval()  # spectral norm's power iteration would otherwise move the weights between calls
    w = torch.tensor([[0.3, 0.7, 0.0], [0.3, 0.7, 0.0]])
    mixed = d(x, w)[0]
    pure = [d(x, torch.eye(3)[[i, i]])[0] for i in range(2)]
    assert torch.allclose(mixed, 0.3 * pure[0] + 0.7 * pure[1], atol=1e-4)
    perfect = [torch.full((2, 1, 4, 4), 2.0)], [torch.full((2, 1, 4, 4), -2.0)]
    assert hinge_d_loss(*perfect).item() == 0.0


def test_teacher_network_budget_and_strength() -> None:
    cfg = TeacherNetConfig(num_styles=4)
    net = TeacherNet(cfg).eval()
    macs = 0

    def hook(module: torch.nn.Conv2d, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() // out.shape[0] * module.in_channels // module.groups * module.kernel_size[0] ** 2

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    x = torch.rand(1, 3, 360, 640)
    with torch.no_grad():
        y = net(x, torch.eye(4)[:1], torch.ones(1, 1))
    assert macs == count_macs(cfg)
    assert 30e9 < macs < 40e9  # Johnson class
    # Identity at initialisation (zero head).
    assert torch.allclose(y, x, atol=1e-6)
    # The painted residual carries no large-scale colour: a constant residual is removed entirely.
    with torch.no_grad():
        net.head.conv.bias.fill_(0.3)
        assert torch.allclose(net(x, torch.eye(4)[:1], torch.ones(1, 1)), x, atol=1e-5)
        net.head.conv.bias.zero_()
    # Training clamps straight-through: a saturated pixel still gets a gradient.
    net.train()
    x = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    with torch.no_grad():
        net.colour[:, :, 3] = 2.0  # every pixel far above 1
    y, raw = net(x, torch.eye(4)[:1], torch.ones(1, 1), return_raw=True)
    assert y.max().item() == 1.0 and raw.min().item() > 2.0
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().min().item() > 0


# ----------------------------------------------------------------------------- real runs of the loop


def _tiny(data_root: Path, out: Path, **extra: object) -> TeacherConfig:
    cfg = TeacherConfig.from_preset("teacher_tiny", [f'data="{data_root}"', f'out="{out}"'])
    for k, v in extra.items():
        setattr(cfg, k, v)
    return cfg


def test_one_step_smoke_run_and_checkpoint_round_trip(data_root: Path, tmp_path: Path) -> None:
    cfg = _tiny(data_root, tmp_path / "run", steps=1, fuse=["ab=a_stripes,b_noise"], style_intensity={"a": 0.5})
    ckpt = train_teacher(cfg)
    # The loop flushes denormals while it runs and restores IEEE arithmetic for the rest of the process.
    assert (torch.tensor(1e-39) * 1.0).item() != 0.0
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1"]
    for key in ("style", "content", "grad", "temporal", "clip_temporal", "loss_d"):
        assert np.isfinite(float(rows[0][key])), key
    assert float(rows[0]["clip_temporal"]) > 0  # the generated clip produced a real pair with flow
    assert float(rows[0]["loss_d"]) > 0  # the critic took a step (adv_start = 0 in the tiny preset)

    stylizer = load_teacher(ckpt)
    assert stylizer.style_names == ("a", "b", "ab")
    assert [len(r) for r in stylizer.style_refs] == [1, 1, 2]
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["config"]["channels"] == [8, 16, 16] and stylizer.net.config.channels == (8, 16, 16)
    rebuilt = TeacherNet(TeacherNetConfig.from_dict(raw["generator_config"]))
    rebuilt.load_state_dict(raw["generator_ema"])
    x = torch.rand(1, 3, 32, 48)
    w, s = torch.tensor([[0.2, 0.3, 0.5]]), torch.ones(1, 1)
    assert torch.equal(stylizer(x, w, s), rebuilt.eval()(x, w, s))
    # The inference copy (fp16 EMA weights) gives the same picture within fp16 rounding.
    small = load_teacher(tmp_path / "run" / "teacher.pt")
    assert (small(x, w, s) - stylizer(x, w, s)).abs().max().item() < 5e-3

    # Resume in chunks: stop at step 2, then go on to 3, same styles and one log.
    cfg.steps, cfg.stop_after = 3, 2
    train_teacher(cfg, resume=ckpt)
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["step"] == 2
    cfg.stop_after = 0
    train_teacher(cfg, resume=ckpt)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["step"] == 3


def test_runs_repeat_with_the_same_seed(data_root: Path, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        train_teacher(_tiny(data_root, tmp_path / name, steps=2, snapshot_every=1))
        losses.append([r["loss_g"] for r in csv.DictReader((tmp_path / name / "log.csv").open())])
    assert losses[0] == losses[1]
    # snapshot_every keeps each step's EMA generator; the last is the exported teacher.
    snaps = sorted(p.name for p in (tmp_path / "a").glob("teacher_step*.pt"))
    assert snaps == ["teacher_step00001.pt", "teacher_step00002.pt"]
    first, last = (load_teacher(tmp_path / "a" / n) for n in snaps)
    assert (first.step, last.step) == (1, 2)
    final = load_teacher(tmp_path / "a" / "teacher.pt")
    x, w, s = torch.rand(1, 3, 32, 48), torch.tensor([[1.0, 0.0]]), torch.ones(1, 1)
    assert torch.equal(last(x, w, s), final(x, w, s))
    assert not torch.equal(first(x, w, s), last(x, w, s))


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown teacher setting"):
        TeacherConfig.from_preset("teacher_tiny", ["stepz=3"])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable teacher checkpoint"):
        load_teacher(bad)
    with pytest.raises(ValueError, match="unknown style"):
        style_intensity_vector({"lineartt": 0.5}, ("vangogh", "lineart"))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        style_intensity_vector({"lineart": 1.5}, ("vangogh", "lineart"))
    assert style_intensity_vector({"lineart": 0.5}, ("vangogh", "lineart")).tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"style_boost values must be in \(0, 10\]"):
        style_boost_vector({"lineart": 0.0}, ("vangogh", "lineart"))
    assert style_boost_vector({"vangogh": 3.0}, ("vangogh", "lineart")).tolist() == [3.0, 1.0]


def test_style_boost_scales_each_styles_statistics_terms(data_root: Path, tmp_path: Path) -> None:
    # The same seed takes the same first step; boosting every style by 2 doubles exactly the style,
    # expression and colour terms that step logs (a blend's boost is its weights' mix of 2s) and nothing else.
    def first_row(name: str, **extra: object) -> dict[str, float]:
        train_teacher(_tiny(data_root, tmp_path / name, steps=1, **extra))
        row = next(csv.DictReader((tmp_path / name / "log.csv").open()))
        return {k: float(v) for k, v in row.items()}

    base = first_row("base")
    boosted = first_row("boosted", style_boost={"a": 2.0, "b": 2.0})
    assert base["style"] + base["expr"] > 0 and base["colour"] > 0
    for key in ("style", "expr", "colour"):
        assert boosted[key] == pytest.approx(2.0 * base[key], rel=1e-4), key
    for key in ("content", "grad", "temporal"):
        assert boosted[key] == pytest.approx(base[key], rel=1e-4), key


def test_two_process_ddp_smoke_run_on_gloo(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "teacher", "--preset", "teacher_tiny", "--set", f'data="{data_root}"',
           "--set", f'out="{out}"', "--set", "steps=2"]
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stdout
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]  # only rank 0 writes


def test_gradient_loss_charges_lost_edges_not_new_strokes() -> None:
    # A vertical edge on flat grey: painting fine strokes on the flat half costs far less than losing the edge.
    x = torch.full((1, 3, 64, 64), 0.3)
    x[..., 32:] = 0.8
    strokes = x.clone()
    strokes[..., 8:24, 4:28] += 0.08 * torch.sign(torch.sin(torch.arange(24.0) * 2.1))  # 1-2 px stripes
    blurred = torch.nn.functional.avg_pool2d(x, 15, 1, 7, count_include_pad=False)
    assert gradient_loss(strokes, x).item() < 0.25 * gradient_loss(blurred, x).item()


def test_style_filter_banks_warm_start_and_stay_per_style() -> None:
    torch.manual_seed(0)
    shared = TeacherNet(TeacherNetConfig(num_styles=3, channels=(8, 16, 16), blocks=2))
    with torch.no_grad():
        shared.head.conv.weight.normal_(0, 0.05)  # not the identity, so the banks' outputs matter
    banked = TeacherNet(TeacherNetConfig(num_styles=3, channels=(8, 16, 16), blocks=2, style_filters=1))
    banked.load_state_dict(expand_banks(shared.state_dict(), banked))
    assert banked.head.conv.weight.shape == (4, 3, 8, 7, 7)  # 3 styles + the identity pseudo-style
    x = torch.rand(3, 3, 32, 48)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.5, 0.5]])
    s = torch.tensor([[1.0], [0.7], [0.3]])
    shared.eval(), banked.eval()
    with torch.no_grad():
        # The warm start is exact: every bank is a copy of the shared filters.
        assert (banked(x, w, s) - shared(x, w, s)).abs().max().item() < 1e-5
        # Each sample runs with its own blended kernel: a batch gives what each sample alone gives.
        together = banked(x, w, s)
        alone = torch.cat([banked(x[i:i + 1], w[i:i + 1], s[i:i + 1]) for i in range(3)])
        assert (together - alone).abs().max().item() < 1e-5
    # A one-hot style at full strength trains only its own bank.
    banked.train()
    banked(x[:1], w[:1], s[:1]).square().mean().backward()
    grad = banked.head.conv.weight.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


def test_init_turns_a_shared_checkpoint_into_style_banks(data_root: Path, tmp_path: Path) -> None:
    first = train_teacher(_tiny(data_root, tmp_path / "shared", steps=1))
    ckpt = train_teacher(_tiny(data_root, tmp_path / "banked", steps=1, style_filters=1, init=str(first)))
    stylizer = load_teacher(ckpt)
    assert stylizer.net.config.style_filters == 1
    assert stylizer.net.head.conv.weight.dim() == 5  # per-style banks, rebuilt from the stored config
    with pytest.raises(ValueError, match="styles"):
        train_teacher(_tiny(data_root, tmp_path / "other", steps=1, init=str(first), fuse=["ab=a_stripes,b_noise"]))


def test_init_from_an_exported_generator_and_no_resume_from_it(data_root: Path, tmp_path: Path) -> None:
    first = train_teacher(_tiny(data_root, tmp_path / "first", steps=1))
    exported = tmp_path / "first" / "teacher.pt"  # EMA generator alone, fp16 (what a lent GPU sends back)
    cfg = _tiny(data_root, tmp_path / "second", steps=1, init=str(exported), lr_g=0.0, lr_d=0.0)
    ckpt = train_teacher(cfg)
    before = torch.load(first, map_location="cpu", weights_only=True)["generator_ema"]
    after = torch.load(ckpt, map_location="cpu", weights_only=True)["generator"]
    # With a zero learning rate the trained generator is the exported EMA weights, up to fp16 rounding.
    assert max((after[k] - before[k]).abs().max().item() for k in before) < 1e-2
    with pytest.raises(ValueError, match="cannot be resumed"):
        train_teacher(_tiny(data_root, tmp_path / "third", steps=2), resume=exported)


def test_time_budget_fits_the_steps_to_the_measured_speed() -> None:
    budget = TimeBudget(seconds=2.0, start_step=0, probe=4, skip=1)
    fitted = None
    for step in range(1, 7):
        fitted = budget.fit(step) if fitted is None else fitted
        time.sleep(0.05)
    assert fitted is not None and budget.fit(7) is None  # decided once
    assert 0.04 < budget.seconds_per_step < 0.5
    # About (0.92 * 2 s - 0.3 s spent) / 0.05 s more steps: well past the probe, well short of unbounded.
    assert 10 < fitted < 45


def test_time_budget_run_rescales_its_schedule(data_root: Path, tmp_path: Path) -> None:
    cfg = _tiny(data_root, tmp_path / "budget", steps=1000, adv_start=500, adv_ramp=100, save_every=1000,
                sample_every=1000, time_budget_min=0.25)
    ckpt = train_teacher(cfg)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    steps = saved["config"]["steps"]
    assert 25 < steps < 1000 and saved["step"] == steps  # the run set its own length and finished it
    assert saved["config"]["adv_start"] == round(500 * steps / 1000)
    assert saved["config"]["ema_decay"] <= 1.0 - 10.0 / steps


def test_warp_keeps_subpixel_positions_for_bf16_images() -> None:
    # Past 256 px a bf16 coordinate grid rounds to whole pixels; the grid must stay float32.
    h, w = 64, 600
    xs = torch.linspace(0, 20, w).view(1, 1, 1, w).expand(1, 1, h, w)
    img = torch.sin(xs)  # smooth, so a half-pixel error is visible
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0] = 0.5
    exact = warp(img, flow)
    half = warp(img.bfloat16(), flow)
    assert half.dtype == torch.bfloat16
    # bf16 rounding of the values alone is < 0.004; a whole-pixel misplacement would be ~0.017 at x > 256.
    assert (half.float() - exact).abs()[..., 300:].max().item() < 0.006


def test_losses_take_a_bf16_output_against_a_float32_content() -> None:
    # Under CUDA bf16 autocast the generator's output is bf16 and the photo float32; the first GPU run failed
    # in local_colour_loss's solve on exactly that mix.
    x = torch.rand(2, 3, 64, 64)
    y = (x * 0.8 + 0.1).bfloat16()
    exact = local_colour_loss(y.float(), x)
    mixed = local_colour_loss(y, x)
    assert mixed.dtype == torch.float32 and abs(mixed.item() - exact.item()) < 1e-6


def test_relative_tiles_ask_each_tile_for_contrast_in_proportion_to_its_own() -> None:
    from engines.features import mean_std

    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 6, 16, 16, generator=g)
    f[..., :8] *= 0.05  # left half flat (a wall), right half busy
    target = StyleStats(mu={0: torch.randn(1, 6, generator=g)}, sigma={0: torch.rand(1, 6, generator=g) + 0.5},
                        rgb_mu=torch.zeros(1, 3), rgb_sigma=torch.ones(1, 3))
    gmu, gsigma = mean_std(f)
    mapped = (f - gmu[..., None, None]) / gsigma[..., None, None] * target.sigma[0][..., None, None] \
        + target.mu[0][..., None, None]  # the global content->style map (AdaIN), applied everywhere
    one = torch.ones(1, 1)
    rel = expression_loss({0: mapped}, {0: f}, target, one, (0,), grid=2, relative=True)
    absolute = expression_loss({0: mapped}, {0: f}, target, one, (0,), grid=2)
    assert rel.item() < 1e-4 < absolute.item()  # absolute tiles would have the flat half repainted
    other = torch.randn(1, 6, 16, 16, generator=g)
    assert torch.allclose(expression_loss({0: other}, {0: f}, target, one, (0,), grid=1, relative=True),
                          expression_loss({0: other}, {0: f}, target, one, (0,), grid=1), atol=1e-6)


def test_chroma_texture_leaves_luma_alone_and_extends_a_grey_generator_as_the_identity() -> None:
    torch.manual_seed(0)
    base = dict(num_styles=2, channels=(8, 16, 16), blocks=1, style_filters=1, grey_residual=True)
    grey = TeacherNet(TeacherNetConfig(**base)).train()
    colour = TeacherNet(TeacherNetConfig(**base, chroma=3)).train()
    x = torch.rand(2, 3, 48, 64) * 0.6 + 0.2
    w, s = torch.tensor([[1.0, 0.0], [0.3, 0.7]]), torch.ones(2, 1)
    # A grey-residual head's three channels are equal (they only ever learned through their mean):
    # adding chroma to it changes nothing.
    with torch.no_grad():
        for p in grey.head.parameters():  # output channels: dim 1 of a bank (S+1, out, ...), else dim 0
            out_dim = 1 if p.dim() in (2, 5) else 0
            p.copy_(torch.randn_like(p.narrow(out_dim, 0, 1)).expand_as(p) * 0.05)
    colour.load_state_dict(grey.state_dict())
    _, raw_grey = grey(x, w, s, return_raw=True)
    _, raw_colour = colour(x, w, s, return_raw=True)
    assert torch.allclose(raw_grey, raw_colour, atol=1e-6)
    # Once the head's channels part, colour texture appears, and the luma every edge measure reads is unchanged.
    with torch.no_grad():
        for p in colour.head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        grey.load_state_dict(colour.state_dict())
    _, raw_grey = grey(x, w, s, return_raw=True)
    _, raw_colour = colour(x, w, s, return_raw=True)
    assert (raw_colour - raw_grey).abs().amax() > 1e-3
    assert torch.allclose(luma(raw_colour), luma(raw_grey), atol=1e-5)
    # The chroma is blurred, so it varies less from pixel to pixel than unblurred chroma would.
    sharp = TeacherNet(TeacherNetConfig(**base, chroma=1)).train()
    sharp.load_state_dict(colour.state_dict())
    _, raw_sharp = sharp(x, w, s, return_raw=True)
    def roughness(raw: torch.Tensor) -> float:
        c = (raw - raw_grey).detach()
        return float((c[..., 1:] - c[..., :-1]).abs().mean())
    assert roughness(raw_colour) < 0.9 * roughness(raw_sharp)  # measured 0.74
    for bad in (dict(base, chroma=2), dict(base, chroma=3, grey_residual=False)):
        with pytest.raises(ValueError, match="odd width"):
            TeacherNetConfig(**bad)


def test_rgb_style_term_is_logged_and_scaled_by_the_references_colour(data_root: Path, tmp_path: Path) -> None:
    # A grey reference asks for no colour texture: its RGB term is scaled to 0.
    grey_ref = tmp_path / "woodcut.png"
    rng = np.random.default_rng(0)
    Image.fromarray(np.repeat(rng.integers(0, 255, (96, 96, 1), dtype=np.uint8), 3, axis=2)).save(grey_ref)
    cfg = _tiny(data_root, tmp_path / "bank", styles=["a", f"ink={grey_ref}"])
    colourful = StyleBank.from_config(cfg).colourfulness(96)
    assert colourful[0] > 0.02 and float(colourful[1]) == pytest.approx(0.0, abs=1e-3)
    train_teacher(_tiny(data_root, tmp_path / "rgb", steps=1, chroma=3, grey_residual=True, style_rgb_weight=10.0))
    row = next(csv.DictReader((tmp_path / "rgb" / "log.csv").open()))
    assert float(row["style_rgb"]) > 0
    train_teacher(_tiny(data_root, tmp_path / "off", steps=1))
    row = next(csv.DictReader((tmp_path / "off" / "log.csv").open()))
    assert float(row["style_rgb"]) == 0


def test_a_preset_can_build_on_another(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text('base = "teacher_tiny"\nsteps = 7\ncrop = 48\n')
    (tmp_path / "child.toml").write_text('base = "parent"\ncrop = 32\n')
    cfg = TeacherConfig.from_preset(tmp_path / "child.toml", ["blocks=3"])
    tiny = TeacherConfig.from_preset("teacher_tiny")
    assert (cfg.steps, cfg.crop, cfg.blocks) == (7, 32, 3)
    assert cfg.channels == tiny.channels and cfg.styles == tiny.styles
    (tmp_path / "loop.toml").write_text('base = "loop"\n')
    with pytest.raises(ValueError, match="loop"):
        TeacherConfig.from_preset(tmp_path / "loop.toml")
    # The shipped fine-tune preset is the CPU preset plus its recipe.
    tune, cpu = TeacherConfig.from_preset("teacher_finetune"), TeacherConfig.from_preset("teacher_cpu")
    assert tune.init and tune.style_rgb_weight > 0 and tune.chroma > 0
    assert (tune.styles, tune.fuse, tune.channels, tune.style_filters) == (cpu.styles, cpu.fuse, cpu.channels,
                                                                          cpu.style_filters)
