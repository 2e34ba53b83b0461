"""Distillation: a smoke run of the real loop on generated data, against a real (tiny) teacher."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.artifact import load_artifact
from engines.student import StudentConfig, StudentNet
from tests.traindata import make_data_root
from train.distill import DistillConfig, init_from_artifact, train_distill
from train.teacher import TeacherConfig, train_teacher

pytestmark = pytest.mark.unit


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


def test_init_copies_film_rows_by_style_name() -> None:
    src = load_artifact()  # the bundled default: vangogh, hokusai, ...
    names = ("hokusai", "brand_new", "vangogh")
    net = StudentNet(StudentConfig(num_styles=3))
    init_from_artifact(net, src.path, names)
    ref = src.load_student()
    old = src.contract.style_names
    assert torch.equal(net.down_film.scale[0], ref.down_film.scale[old.index("hokusai")])
    assert torch.equal(net.down_film.scale[2], ref.down_film.scale[old.index("vangogh")])
    assert torch.count_nonzero(net.down_film.scale[1]) == 0  # a new style starts at the identity
    assert torch.equal(net.encode.weight, ref.encode.weight)
