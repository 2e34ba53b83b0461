"""`python -m train eval`, the report: metrics.md and metrics.csv, and the side-by-side comparison videos."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from train.eval_metrics import ClipRuns, Fidelity, ModelResult, Reference, Stylizer, style_map
from train.eval_speed import SPEED_SIZE, SPEED_WARMUP, SpeedPair, SpeedSide
from train.look_eval import LookRow, look_md

LABEL_BAR = 18  # pixels of label strip above the side-by-side video


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "model"


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _si(n: float) -> str:
    """1234567 -> '1.23 M': parameter and MAC counts span tiny test nets to full teachers."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"



# ---------------------------------------------------------------- side-by-side video


def video_codec() -> str:
    """H.264 (libx264) where this PyAV build has the encoder, else MPEG-4 part 2, which FFmpeg always builds."""
    import av

    try:
        return av.codec.Codec("libx264", "w").name
    except ValueError:  # PyAV's UnknownCodecError: not in this build
        return "mpeg4"


def write_video(frames: Sequence[np.ndarray], rate: Fraction, path: Path) -> str:
    """RGB uint8 frames (even sizes) -> a yuv420p video at `rate`; returns the codec used."""
    import av

    codec = video_codec()
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        assert isinstance(s, av.VideoStream)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "18"}  # near-transparent: the differences shown should be the models', not the codec's
        else:
            s.bit_rate = int(0.3 * w * h * float(rate))  # mpeg4's default 200 kb/s smears exactly that detail
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return codec


def _label_bar(labels: Sequence[str], width: int) -> np.ndarray:
    """A black strip with each panel's label in white, over panels `width` pixels wide."""
    bar = Image.new("RGB", (width * len(labels), LABEL_BAR), "black")
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=12)
    for i, text in enumerate(labels):
        draw.text((i * width + 4, 2), text, fill="white", font=font)
    return np.asarray(bar)


def side_by_side(parts: Sequence[tuple[Sequence[str], Sequence[Sequence[np.ndarray]]]]) -> list[np.ndarray]:
    """Each part: panel labels and panel clips (equal lengths and sizes) -> frames, panels in a row under their
    labels, parts one after the other; the last row/column repeated where needed, as yuv420p wants even sizes."""
    out = []
    for labels, panels in parts:
        bar = _label_bar(labels, panels[0][0].shape[1])
        for row in zip(*panels):
            f = np.concatenate([bar, np.concatenate(row, axis=1)], axis=0)
            out.append(np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge"))
    return out


def _short_label(label: str) -> str:
    """runs/distill/model -> 'model': panel labels are small."""
    return Path(label).name or label


def comparison_video(ref: Reference, model: Stylizer, label: str, runs: ClipRuns, rate: Fraction, out: Path) -> Path:
    """input | teacher | model on the clip: the teacher's first style at strength 1, then its first 50/50 blend."""
    names = ref.model.style_names
    to_model = style_map(names, model.style_names, label)
    eye = torch.eye(len(names))
    settings = [(names[0], eye[0])] + ([(f"{names[0]}+{names[1]}", (eye[0] + eye[1]) / 2)] if len(names) > 1 else [])
    parts = [(["input", f"teacher: {title}", f"{_short_label(label)}: {title}"],
              [runs.frames, runs(ref.label, ref.model, w), runs(label, model, w @ to_model)]) for title, w in settings]
    path = out / f"side_by_side_{slug(label)}.mp4"
    write_video(side_by_side(parts), rate, path)
    return path


# ---------------------------------------------------------------- tables


def _main_md(results: list[ModelResult], floor: float) -> list[str]:
    styles = list(dict.fromkeys(n for r in results for n in r.style_names))
    md = [("| model | styles | style distance ↓ | (input's) | edge SSIM ↑ | warping error, first style ↓ "
           "| warping error, 50/50 blend ↓ |"), "|---|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r.label} | {', '.join(r.style_names)} | {r.mean_style_distance:.4f} | {r.input_style_distance:.4f} "
           f"| {r.edge_ssim:.3f} | {_fmt(r.warp_first, 5)} | {_fmt(r.warp_blend, 5)} |" for r in results]
    md += [f"| input (floor) | — | — | — | — | {floor:.5f} | {floor:.5f} |", "",
           "Style distance per style (lower is closer to the model's own references):", "",
           "| style | " + " | ".join(r.label for r in results) + " |", "|---|" + "---:|" * len(results)]
    md += [f"| {s} | " + " | ".join(_fmt(r.style_distance.get(s), 4) for r in results) + " |" for s in styles]
    md += ["", "Edge SSIM per style (higher keeps more of the photo's structure):", "",
           "| style | " + " | ".join(r.label for r in results) + " |", "|---|" + "---:|" * len(results)]
    md += [f"| {s} | " + " | ".join(_fmt(r.edge_per_style.get(s), 3) for r in results) + " |" for s in styles]
    return md + _shared_md(results)


def shared_styles(results: Sequence[ModelResult]) -> list[str]:
    """The styles every model has, in the first model's order."""
    return [s for s in results[0].style_names if all(s in r.style_names for r in results[1:])]


def _shared_md(results: list[ModelResult]) -> list[str]:
    """Models with different banks are compared on the styles they share too: a mean over a bank with easier
    (or harder) extra styles is not the same measure."""
    if len(results) < 2 or all(r.style_names == results[0].style_names for r in results):
        return []
    common = shared_styles(results)
    if not common:
        return ["", "The models share no style, so their style distances are not comparable."]
    md = ["", f"On the {len(common)} styles every model has ({', '.join(common)}):", "",
          "| model | style distance ↓ | edge SSIM ↑ |", "|---|---:|---:|"]
    md += [f"| {r.label} | {d:.4f} | {e:.3f} |" for r in results for d, e in [r.on(common)]]
    return md


def _fidelity_md(reference: str, fids: list[Fidelity], photos: int, size: int) -> list[str]:
    settings = list(fids[0].scores)
    intro = (f"Fidelity to the teacher ({reference}): PSNR (dB) ↑ and SSIM ↑ of each model's output against the "
             f"teacher's on the {photos} held-out photos at {size} px short side, mean over the photos; styles "
             "matched by name, strength 1 unless marked:")
    md = ["", intro, "",
          "| setting | " + " | ".join(f"{f.label} PSNR | {f.label} SSIM" for f in fids) + " |",
          "|---|" + "---:|---:|" * len(fids)]
    md += [f"| {s} | " + " | ".join(f"{f.scores[s][0]:.2f} | {f.scores[s][1]:.4f}" for f in fids) + " |"
           for s in settings]
    md.append("| **mean, styles and blends** | "
              + " | ".join(f"**{f.overall[0]:.2f}** | **{f.overall[1]:.4f}**" for f in fids) + " |")
    return md


def _speed_md(pairs: list[SpeedPair]) -> list[str]:
    w, h = SPEED_SIZE
    n = pairs[0].threads
    intro = (f"Speed on the CPU at {w}x{h}, batch 1, {n} thread{'s' * (n != 1)} a side; each student timed with the "
             f"teacher in one interleaved run ({SPEED_WARMUP + 1} warm-up calls each, then rounds alternating which "
             "goes first, one teacher frame and as many student frames as take about as long); ms/frame is the "
             "median over the rounds:")
    md = ["", intro, "",
          "| model | runs on | params | MACs/frame | frames timed | ms/frame ↓ | fps ↑ | speed-up vs teacher ↑ |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in pairs:
        for side, label, ratio in ((p.teacher, f"{p.teacher.label} (with {p.student.label})", 1.0),
                                   (p.student, p.student.label, p.speedup)):
            md.append(f"| {label} | {side.runs_on} | {_si(side.params)} | {_si(side.macs)} | {side.frames} "
                      f"| {side.ms_per_frame:.1f} | {side.fps:.1f} | {ratio:.2f}x |")
    return md


FIDELITY_CSV = ("psnr", "ssim")


def _write_csv(results: list[ModelResult], floor: float, fids: list[Fidelity], pairs: list[SpeedPair],
               path: Path) -> None:
    """One row per model and the floor; the fidelity and speed columns are empty where they do not apply."""
    styles = list(dict.fromkeys(n for r in results for n in r.style_names))
    settings = list(fids[0].scores) if fids else []
    by_fid = {f.label: f for f in fids}
    sides: dict[str, list[SpeedSide]] = {}
    for p in pairs:
        sides.setdefault(p.teacher.label, []).append(p.teacher)
        sides.setdefault(p.student.label, []).append(p.student)
    speedups = {p.student.label: p.speedup for p in pairs} | ({pairs[0].teacher.label: 1.0} if pairs else {})
    fid_cols = [f"fidelity_{m}_mean" for m in FIDELITY_CSV] + [f"fidelity_{m}_{s}" for s in settings
                                                               for m in FIDELITY_CSV]
    speed_cols = ["runs_on", "params", "macs_640x360", "ms_per_frame_640x360", "fps_640x360", "speedup_vs_teacher"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "styles", "style_distance", "input_style_distance", "edge_ssim",
                    "warping_error_first_style", "warping_error_blend"] + [f"style_distance_{s}" for s in styles]
                   + [f"edge_ssim_{s}" for s in styles]
                   + fid_cols + speed_cols)
        for r in results:
            fid = by_fid.get(r.label)
            fid_vals = ([*fid.overall] + [v for s in settings for v in fid.scores[s]]) if fid else [""] * len(fid_cols)
            side = sides.get(r.label)
            ms = float(np.mean([s.ms_per_frame for s in side])) if side else None  # a teacher paired more than once
            speed_vals = ([side[0].runs_on, side[0].params, side[0].macs, ms, 1000.0 / ms, speedups[r.label]]
                          if side and ms else [""] * len(speed_cols))
            w.writerow([r.label, ";".join(r.style_names), r.mean_style_distance, r.input_style_distance, r.edge_ssim,
                        r.warp_first, "" if r.warp_blend is None else r.warp_blend]
                       + [r.style_distance.get(s, "") for s in styles] + [r.edge_per_style.get(s, "") for s in styles]
                       + fid_vals + speed_vals)
        w.writerow(["input (floor)", "", "", "", "", floor, floor] + [""] * (2 * len(styles) + len(fid_cols)
                                                                            + len(speed_cols)))


def write_tables(results: list[ModelResult], floor: float, out: Path, fids: Sequence[Fidelity] = (),
                 pairs: Sequence[SpeedPair] = (), reference: str | None = None, photos: int = 0,
                 size: int = 0, look: Sequence[LookRow] = (), look_count: int = 0) -> str:
    """metrics.md (the look table first, then the summary, per-style distances, and with a teacher the
    fidelity and speed tables) and metrics.csv (one row per model and the floor); returns the markdown."""
    md = (look_md(list(look), look_count) + [""]) if look else []
    md += _main_md(results, floor)
    if fids and reference is not None:
        md += _fidelity_md(reference, list(fids), photos, size)
    if pairs:
        md += _speed_md(list(pairs))
    text = "\n".join(md) + "\n"
    (out / "metrics.md").write_text(text)
    _write_csv(results, floor, list(fids), list(pairs), out / "metrics.csv")
    return text
