"""The fidelity fixture: the teacher's outputs on two held-out photos, stored in tests/fidelity.

The regression test (tests/test_default_fidelity.py, which landed with the first distilled default and this
fixture) runs the bundled student on the same photos and settings and checks its PSNR against these
stored outputs. A retrained default that drifts from its teacher fails there, without the
teacher checkpoint (tens of MB, not committed) or the shared data.

    python -m train fidelity-fixture --teacher runs/teacher_cpu/checkpoint.pt [--student engines/models/default]

Each photo is one PNG strip: input | teacher output per setting. fidelity.json lists the settings (label,
style weights by name, strength), where the teacher came from, the student's PSNR when the fixture was
made, and the floors the test enforces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engines.artifact import WEIGHTS_FILE
from engines.engine_spec import file_sha256
from train.data import SHARED_DATA
from train.eval_metrics import load_student_or_teacher, run_stylizer, sheet_columns, short_side, to_uint8
from train.metrics import psnr

PHOTOS = ("content/kodak/kodim04.jpg", "content/kodak/kodim23.jpg")  # held out of training; Kodak: unrestricted
SIZE = 160          # short side: small enough to commit, large enough for the styles' texture
FLOOR_MARGIN_DB = 1.0  # the test's per-photo mean floor sits this far under the student's score today
COLUMN_MARGIN_DB = 2.5  # and each setting's floor this far under its own score
SELF_FLOOR_DB = 32.0  # the int8 parity floor (engines/parity.py): the cap when the reference is the student itself


def _weights_file(path: Path) -> Path:
    """A teacher checkpoint, or a model folder's weights: a student trained straight from the references has no
    teacher, and its fixture holds its own PyTorch FP32 outputs (a back-end or export that drifts fails)."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def student_scores(model_dir: str | Path, strips: list[np.ndarray], settings: list[dict]) -> list[list[float]]:
    """PSNR of the student on the default CPU back-end (what users run) against each stored teacher output."""
    from engines.loader import load_backend

    backend = load_backend(model_dir, "auto", 1)
    out = []
    for strip in strips:
        w = strip.shape[1] // (len(settings) + 1)
        x = np.ascontiguousarray(strip[:, :w])
        row = []
        for i, s in enumerate(settings):
            y = backend.stylize(x, backend.contract.weights_vector(s["weights"]), s["strength"])
            target = strip[:, (i + 1) * w:(i + 2) * w]
            row.append(psnr(torch.from_numpy(y).float() / 255, torch.from_numpy(np.ascontiguousarray(target)).float() / 255))
        out.append([float(v) for v in row])
    return out


def make_fixture(teacher: str | Path, out: str | Path, student: str | Path | None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_student_or_teacher(teacher)
    names = list(model.style_names)
    cols = sheet_columns(names)
    settings = [{"label": label, "weights": {n: round(float(v), 6) for n, v in zip(names, w) if v > 0},
                 "strength": s} for label, w, s in cols]
    weights = torch.stack([w for _, w, _ in cols])
    strength = torch.tensor([[s] for _, _, s in cols])
    strips = []
    for rel in PHOTOS:
        if not (SHARED_DATA / rel).is_file():
            raise FileNotFoundError(f"{SHARED_DATA / rel}: missing; set STYLIZER_DATA to the shared data folder")
        img = short_side(Image.open(SHARED_DATA / rel).convert("RGB"), SIZE)
        x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float()[None] / 255
        y = to_uint8(run_stylizer(model, x.expand(len(cols), -1, -1, -1), weights, strength))
        strip = np.concatenate([np.asarray(img)] + list(y), axis=1)
        Image.fromarray(strip).save(out / f"{Path(rel).stem}.png", optimize=True)
        strips.append(strip)
    meta: dict = {"photos": [f"{Path(r).stem}.png" for r in PHOTOS], "sources": list(PHOTOS), "size": SIZE,
                  "settings": settings, "teacher": {"file": str(teacher), "sha256": file_sha256(_weights_file(Path(teacher)))},
                  "credit": "Kodak Lossless True Color Image Suite (kodim04, kodim23), released for unrestricted use"}
    if student is not None:
        scores = student_scores(student, strips, settings)
        means = [float(np.mean(r)) for r in scores]
        meta["student"] = {"model": str(student), "psnr": scores, "mean_psnr": means}
        # Against its own FP32 outputs a student scores far above any teacher: cap the floors at the engines'
        # int8 parity floor, so a CPU with other rounding (or the int8 file) does not fail the test.
        meta["floor_mean_db"] = round(min(min(means) - FLOOR_MARGIN_DB, SELF_FLOOR_DB + 3.0), 2)
        meta["floor_setting_db"] = round(min(min(min(r) for r in scores) - COLUMN_MARGIN_DB, SELF_FLOOR_DB), 2)
    (out / "fidelity.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def summary(path: Path) -> str:
    meta = json.loads((path / "fidelity.json").read_text())
    line = f"wrote {path}"
    if "student" in meta:
        per = ", ".join(f"{m:.2f}" for m in meta["student"]["mean_psnr"])
        line += (f": student PSNR vs teacher per photo {per} dB; floors: photo mean {meta['floor_mean_db']} dB, "
                 f"each setting {meta['floor_setting_db']} dB")
    return line
