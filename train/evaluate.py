"""`python -m train eval`: contact sheets and one side-by-side metrics table for students and teachers.

Per model, on the held-out photos and clip (train.data.HELD_OUT, HELD_OUT_CLIP):
- style distance: the full training style loss (train.metrics.style_distance) of each one-hot
  style against that model's own references, lower is closer, beside the unstylized photos' own;
- edge SSIM: how much of the photo's structure each style keeps, higher keeps more;
- warping error (Lai et al. 2018) on the clip for the first style and the first 50/50 blend,
  beside the input's own, which is the floor: flow errors and lighting alone cost that much.

With a reference (`--teacher`), the teacher heads that table and every other model is also compared with it:
- fidelity: PSNR and SSIM of the model's output against the teacher's on the held-out photos, for the
  sheet's columns (each style, the 50/50 blends, the first style at part strengths), styles matched by name;
- a side-by-side video of the clip, input | teacher | model, first style then the first blend;
- speed on the CPU at 640x360, batch 1: the teacher's network in PyTorch eager FP32 against the student on
  the back-end `auto` picks on a machine without a GPU, timed interleaved in one run; parameters and MACs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from engines.artifact import META_FILE
from engines.features import ExpansionFeatures
from train.data import HELD_OUT_CLIP, LOOK_PORTRAITS, SHARED_DATA, held_out_images
from train.eval_metrics import (
    ClipRuns,
    ModelResult,
    Reference,
    Stylizer,
    clip_rate,
    contact_sheet,
    fidelity,
    load_student_or_teacher,
    photo_metrics,
    read_clip,
    style_map,
)
from train.eval_report import comparison_video, slug, write_tables
from train.eval_speed import speed_frames, speed_pair
from train.look_eval import look_photos, look_rows
from train.metrics import Flows, clip_flows, warping_error

# ---------------------------------------------------------------- the command


def _model_list(checkpoints: Sequence[str], teacher: str | None) -> list[str]:
    """The teacher first, then the checkpoints in order; the teacher once (it is the reference, not a student)."""
    if teacher is None:
        return list(checkpoints)
    same = Path(teacher).resolve()
    return [teacher] + [c for c in dict.fromkeys(checkpoints) if Path(c).resolve() != same]


def _model_result(label: str, model: Stylizer, features: ExpansionFeatures, photos: list[Image.Image], size: int,
                  runs: ClipRuns, flows: Flows) -> ModelResult:
    per_style, edges, before = photo_metrics(model, features, photos, size)
    eye = torch.eye(len(model.style_names))
    first = warping_error(runs.frames, runs(label, model, eye[0]), flows)
    blend = warping_error(runs.frames, runs(label, model, (eye[0] + eye[1]) / 2), flows) if len(eye) > 1 else None
    return ModelResult(label, tuple(model.style_names), per_style, edges, before, first, blend)


def _load(label: str, is_teacher: bool) -> Stylizer:
    """The `--teacher` through the teacher loader (a painting teacher's folder too, with its network for
    the speed pair); every other model as a student folder or a .pt teacher."""
    if is_teacher:
        from train.teacher_checkpoint import load_teacher  # here: a student-only evaluation needs no teacher code

        return load_teacher(label)
    return load_student_or_teacher(label)


def _check_reference(models: dict[str, Stylizer], teacher: str, speed: bool) -> None:
    """Fail before the slow work: every model must carry the teacher's styles, and speed needs its network."""
    ref = models[teacher]
    for label, model in models.items():
        style_map(ref.style_names, model.style_names, label)
    if speed and not isinstance(getattr(ref, "net", None), torch.nn.Module):
        raise ValueError(f"{teacher}: speed times the teacher's network, so --teacher must be a .pt teacher "
                         "checkpoint or a painting teacher's folder (or pass --no-speed)")


def evaluate(checkpoints: Sequence[str], out: str | Path, size: int = 384, clip: str | Path | None = None,
             frames: int = 60, height: int = 192, teacher: str | Path | None = None, speed: bool | None = None,
             speed_frames_count: int = 20, speed_threads: int | None = None) -> str:
    """Contact sheet per checkpoint and one metrics table for all of them, written into `out`; returns the tables.

    With `teacher`, it heads the table and every other checkpoint also gets fidelity scores against it and
    a side-by-side video; `speed` (default: on with a teacher) adds the CPU speed table for the student
    folders among them, the teacher timed on `speed_frames_count` frames with `speed_threads` threads a side
    (default: all cores)."""
    speed = teacher is not None if speed is None else speed
    if speed and teacher is None:
        raise ValueError("speed compares students with the teacher: pass --teacher too")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = [img for _, img in held_out_images()]
    if not photos:
        raise FileNotFoundError(f"no held-out photos under {SHARED_DATA}; set STYLIZER_DATA to the shared data folder")
    clip_path = Path(clip) if clip is not None else SHARED_DATA / HELD_OUT_CLIP
    if not clip_path.is_file():
        raise FileNotFoundError(f"{clip_path}: no such clip (pass --clip, or set STYLIZER_DATA)")
    ref_label = None if teacher is None else str(teacher)
    models = {label: _load(label, label == ref_label) for label in _model_list(checkpoints, ref_label)}
    if ref_label is not None:
        _check_reference(models, ref_label, speed)
    video = read_clip(clip_path, frames, size)
    flows = clip_flows(video)
    floor = warping_error(video, video, flows)
    features = ExpansionFeatures()
    runs = ClipRuns(video)
    ref = None if ref_label is None else Reference.build(ref_label, models[ref_label], photos, size)
    results, fids = [], []
    for label, model in models.items():
        contact_sheet(model, photos, label, height, out / f"sheet_{slug(label)}.png")
        results.append(_model_result(label, model, features, photos, size, runs, flows))
        if ref is not None and label != ref.label:
            fids.append(fidelity(model, label, ref))
            comparison_video(ref, model, label, runs, clip_rate(clip_path), out)
        if ref is None or label != ref.label:
            runs.drop(label)  # only the teacher's clips are wanted again (in every student's video)
    pairs = []
    if speed and ref is not None:
        students = [label for label in models if label != ref.label and (Path(label) / META_FILE).is_file()]
        pairs = [speed_pair(ref, label, speed_frames(video), speed_frames_count, speed_threads) for label in students]
    looks = look_photos()
    look = look_rows(models, looks, look_photos(names=LOOK_PORTRAITS)) if looks else []
    return write_tables(results, floor, out, fids, pairs, ref_label, len(photos), size, look, len(looks))
