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
