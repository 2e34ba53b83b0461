"""Distillation: a smoke run of the real loop on generated data, against a real (tiny) teacher."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.artifact import load_artifact
from engines.features import ExpansionFeatures
from engines.student import StudentNet
from tests.traindata import make_data_root
from train.distill import DistillConfig, init_from_artifact, texture_loss, train_distill
from train.teacher import TeacherConfig, train_teacher

pytestmark = pytest.mark.train


def test_distillation_smoke_step_writes_student_and_ablation(tmp_path: Path) -> None:
    data = make_data_root(tmp_path / "data")
    teacher = train_teacher(TeacherConfig.from_preset("teacher_tiny", [f'data="{data}"', f'out="{tmp_path / "t"}"',
                                                                       "steps=1"]))
    cfg = DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{tmp_path / "s"}"'])
    model = train_distill(cfg, teacher, critic_path=teacher)
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]
    for key in ("l1", "perceptual", "temporal", "clip_temporal", "ablation", "loss_d"):
        assert np.isfinite(float(rows[-1][key])), key
    assert float(rows[-1]["loss_d"]) > 0  # the critic (initialised from the teacher's) took a step
    for sub in ("model", "ablation"):
        art = load_artifact(tmp_path / "s" / sub)
        assert art.contract.style_names == ("a", "b")
        assert art.meta["provenance"]["temporal_terms"] is (sub == "model")
        assert art.onnx_path.is_file()
    net = load_artifact(model).load_student()
    x = torch.rand(1, 3, 32, 48)
    assert net(x, torch.tensor([[1.0, 0.0]]), torch.ones(1, 1)).shape == x.shape


def test_a_chain_of_runs_starts_the_twin_from_the_previous_twin(tmp_path: Path) -> None:
    """ablation_init: the next link's twin continues the last twin, the student the last student."""
    data = make_data_root(tmp_path / "data")
    teacher = train_teacher(TeacherConfig.from_preset("teacher_tiny", [f'data="{data}"', f'out="{tmp_path / "t"}"',
                                                                       "steps=1"]))
    first = tmp_path / "first"
    train_distill(DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{first}"']), teacher)
    # lr 0: the second link's weights are exactly where each of its students started
    cfg = DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{tmp_path / "second"}"', "lr=0.0",
                                                     "steps=1", f'init="{first / "model"}"',
                                                     f'ablation_init="{first / "ablation"}"'])
    train_distill(cfg, teacher)
    weights = {run / sub: load_artifact(run / sub).load_student().state_dict()
               for run in (first, tmp_path / "second") for sub in ("model", "ablation")}
    for sub in ("model", "ablation"):
        for key, value in weights[first / sub].items():
            assert torch.equal(weights[tmp_path / "second" / sub][key], value), (sub, key)
    # the two lineages had already parted in the first link, so the check above can tell them apart
    assert any(not torch.equal(v, weights[first / "ablation"][k]) for k, v in weights[first / "model"].items())


def test_init_copies_film_rows_by_style_name() -> None:
    src = load_artifact()  # the bundled default: vangogh, hokusai, ...
    names = ("hokusai", "brand_new", "vangogh")
    net = StudentNet(dataclasses.replace(src.config, num_styles=3))
    init_from_artifact(net, src.path, names)
    ref = src.load_student()
    old = src.contract.style_names
    assert torch.equal(net.down_film.scale[0], ref.down_film.scale[old.index("hokusai")])
    assert torch.equal(net.down_film.scale[2], ref.down_film.scale[old.index("vangogh")])
    assert torch.count_nonzero(net.down_film.scale[1]) == 0  # a new style starts at the identity
    if src.config.paint:  # and the painter's identity row (strength 0) comes along
        assert torch.equal(net.down_film.scale[-1], ref.down_film.scale[-1])
    assert torch.equal(net.encode.weight, ref.encode.weight)


def test_texture_loss_ignores_where_a_stroke_lies_but_not_whether_it_is_there() -> None:
    """0 for identical features; a texture moved within its tile costs far less than a missing one."""
    features = ExpansionFeatures((0, 2, 4))
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 96, 96), 0.5)
    stripes = flat.clone()
    stripes[:, :, :, ::4] = 0.1  # an ink texture: vertical strokes every 4 px
    shifted = torch.roll(stripes, shifts=2, dims=3)  # the same strokes, 2 px along
    noisy = (flat + 0.02 * torch.randn(flat.shape, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        ft, fs, fn = features(stripes), features(shifted), features(noisy)
    taps = [0, 2, 4]
    assert texture_loss(ft, ft, taps, 4).item() < 1e-9
    moved, missing = texture_loss(fs, ft, taps, 4).item(), texture_loss(fn, ft, taps, 4).item()
    # L1 charges the moved strokes almost as much as the missing ones; the statistics do not.
    assert F.l1_loss(shifted, stripes) > 0.5 * F.l1_loss(noisy, stripes)
    assert moved < 0.1 * missing, (moved, missing)


def test_distillation_with_the_texture_term_logs_it(tmp_path: Path) -> None:
    data = make_data_root(tmp_path / "data")
    teacher = train_teacher(TeacherConfig.from_preset("teacher_tiny", [f'data="{data}"', f'out="{tmp_path / "t"}"',
                                                                       "steps=1"]))
    cfg = DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{tmp_path / "s"}"',
                                                     "texture_weight=5.0", "ablate_temporal=false", "steps=1"])
    train_distill(cfg, teacher)
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    assert float(rows[-1]["texture"]) > 0


def test_distillation_fits_a_time_budget(tmp_path: Path) -> None:
    data = make_data_root(tmp_path / "data")
    teacher = train_teacher(TeacherConfig.from_preset("teacher_tiny", [f'data="{data}"', f'out="{tmp_path / "t"}"',
                                                                       "steps=1"]))
    cfg = DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{tmp_path / "s"}"', "steps=100000",
                                                     "adv_start=50000", "save_every=100000", "time_budget_min=0.2",
                                                     "ablate_temporal=false"])
    model = train_distill(cfg, teacher)
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    prov = load_artifact(model).meta["provenance"]
    steps = prov["config"]["steps"]
    # The run measured itself, cut its length to fit 12 s, finished it, and saved with the fitted schedule.
    assert 25 < steps < 100000 and len(rows) == steps == prov["steps_done"]
    assert prov["config"]["adv_start"] == round(50000 * steps / 100000)


def test_a_painting_teacher_grows_from_a_student_and_distils(tmp_path: Path) -> None:
    """The painting chain on generated data: a small painter, the teacher grown from it and trained with the
    critic, and a painting student distilled from the teacher's folder with that critic."""
    from train.perceptual import PerceptualConfig, train_perceptual

    data = make_data_root(tmp_path / "data")
    small = dict(styles=["a", "b"], batch=2, crop=64, style_short_side=64, grad_short_side=96, data=str(data),
                 threads=1, enc_channels=8, body_channels=16, half_channels=8, blocks=2, half_blocks=1, pad=8,
                 dist_points=512)
    student = train_perceptual(PerceptualConfig(**small, out=str(tmp_path / "p"), steps=1, save_every=1))
    big = {**small, "enc_channels": 16, "body_channels": 32, "blocks": 3, "detail_channels": 12}
    teacher = train_perceptual(PerceptualConfig(**big, out=str(tmp_path / "t"), steps=2, save_every=2,
                                                init=str(student), adv_weight=1.0, adv_start=0, real_batch=2,
                                                strength_full=1.0))
    rows = list(csv.DictReader((tmp_path / "t" / "log.csv").open()))
    assert all(float(r["critic"]) > 0 and float(r["adv"]) != 0 for r in rows)  # both sides of the game ran
    art = load_artifact(teacher)
    assert (art.config.body_channels, art.config.blocks) == (32, 3)
    assert "adversarial" in art.meta["provenance"]["recipe"]
    assert (tmp_path / "t" / "critic.pt").is_file()
    with pytest.raises(ValueError, match="neither this run's, a larger one in every field, nor this one with more blocks"):
        train_perceptual(PerceptualConfig(**{**small, "body_channels": 8}, out=str(tmp_path / "x"), steps=1,
                                          init=str(teacher)))

    cfg = DistillConfig.from_preset("distill_tiny", [f'data="{data}"', f'out="{tmp_path / "s"}"', 'output="paint"',
                                                     "pad=8", "half_blocks=1", 'sizes=["slim:half_blocks=0,blocks=0"]'])
    model = train_distill(cfg, teacher, critic_path=tmp_path / "t" / "critic.pt")
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    assert float(rows[-1]["loss_d"]) > 0 and np.isfinite(float(rows[-1]["loss_slim"]))
    art, slim = load_artifact(model), load_artifact(tmp_path / "s" / "slim")
    assert art.config.paint and art.meta["provenance"]["teacher"]["macs_640x360"] > art.meta["provenance"]["macs_640x360"]
    assert (slim.config.blocks, slim.config.half_blocks) == (0, 0)
    assert slim.meta["provenance"]["macs_640x360"] < art.meta["provenance"]["macs_640x360"]
    with pytest.raises(ValueError, match="layout field"):
        train_distill(dataclasses.replace(cfg, sizes=["x:width=3"]), teacher)
