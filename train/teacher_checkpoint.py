"""Teacher checkpoints: saving a training checkpoint, exporting the inference-only generator, and loading
either as a stylizer (load_teacher). The training loop is train/teacher.py.

A painting teacher is a model folder instead: the student's layout grown several times wider and deeper
(train/grow.py) and trained by `python -m train perceptual` with the critic on. load_teacher takes both.

A checkpoint stores its whole config (format "stylizer-teacher/1"), so a resume or an evaluation rebuilds the
exact networks.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from engines.artifact import META_FILE, load_artifact
from engines.contract import padded_size
from engines.student import count_macs as student_macs
from train.data import SHARED_DATA, source_refs
from train.teacher_net import TeacherNet, TeacherNetConfig
from train.teacher_net import count_macs as teacher_macs

if TYPE_CHECKING:
    from train.discriminator import MultiScaleDiscriminator
    from train.teacher import StyleBank, TeacherConfig


def save_checkpoint(path: Path, cfg: TeacherConfig, bank: StyleBank, step: int, g: TeacherNet, g_ema: TeacherNet,
                    d: MultiScaleDiscriminator, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "format": "stylizer-teacher/1",
        "config": asdict(cfg),
        "style_names": list(bank.names),
        "style_refs": [[str(p) for p in refs] for refs in bank.refs],
        "generator_config": g.config.to_dict(),
        "step": step,
        "generator": g.state_dict(),
        "generator_ema": g_ema.state_dict(),
        "discriminator": d.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
    }, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save never leaves a broken checkpoint


def export_generator(path: Path, ckpt_path: Path, half: bool = True) -> Path:
    """A small inference-only file (EMA generator, config, styles), for distillation and evaluation."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["generator_ema"].items()}
    keep = {k: ckpt[k] for k in ("format", "config", "style_names", "style_refs", "generator_config", "step")}
    torch.save({**keep, "generator_ema": state}, path)
    return path


class TeacherStylizer:
    """The EMA generator of a checkpoint as a stylizer: (x, weights, strength) -> image, no grad."""

    def __init__(self, ckpt: dict) -> None:
        self.net = TeacherNet(TeacherNetConfig.from_dict(ckpt["generator_config"]))
        self.net.load_state_dict({k: v.float() for k, v in ckpt["generator_ema"].items()})
        self.net.eval()
        self.style_names = tuple(ckpt["style_names"])
        self.style_refs = [[_local_ref(Path(p)) for p in refs] for refs in ckpt["style_refs"]]
        self.step = int(ckpt["step"])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return self.net(x, weights, strength)


class PaintingTeacher:
    """A painting teacher's model folder as a stylizer: its network in PyTorch, frames edge-padded to the
    size contract's multiple as the back-ends pad them."""

    def __init__(self, path: Path, root: Path = SHARED_DATA) -> None:
        art = load_artifact(path)
        if not art.config.paint:
            raise ValueError(f"{path}: a teacher folder must hold a painting net (output = 'paint')")
        self.net = art.load_student().eval()
        self.multiple = art.contract.size_multiple
        self.style_names = art.contract.style_names
        provenance = art.meta.get("provenance", {})
        self.style_refs = [source_refs(provenance.get("styles", {}).get(n), n, root) for n in self.style_names]
        self.step = int(provenance.get("steps_done", 0))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        hp, wp = padded_size(h, w, self.multiple)
        y = self.net(F.pad(x, (0, wp - w, 0, hp - h), mode="replicate"), weights, strength)
        return y[..., :h, :w]


def stylizer_macs(net: torch.nn.Module, height: int = 360, width: int = 640) -> int:
    """Multiply-accumulates of one frame through either kind of teacher's network (or a student's)."""
    if isinstance(net, TeacherNet):
        return teacher_macs(net.config, height, width)
    return student_macs(net.config, height, width)


def _local_ref(path: Path) -> Path:
    """A reference path stored by another machine (a lent GPU) -> the same file in this machine's styles folder."""
    if path.is_file():
        return path
    local = SHARED_DATA / "styles" / path.name
    return local if local.is_file() else path


def load_teacher(path: str | Path, root: Path = SHARED_DATA) -> TeacherStylizer | PaintingTeacher:
    """A teacher checkpoint (checkpoint.pt, or an exported teacher.pt) -> its EMA generator as a stylizer;
    a painting teacher's model folder -> its network, its references looked up under the data `root`."""
    if (Path(path) / META_FILE).is_file():
        return PaintingTeacher(Path(path), root)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable teacher checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != "stylizer-teacher/1":
        raise ValueError(f"{path}: not a teacher checkpoint (no stylizer-teacher/1 format tag)")
    return TeacherStylizer(ckpt)
