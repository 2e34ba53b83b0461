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

import csv
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from engines.artifact import META_FILE
from engines.contract import padded_size
from engines.features import ExpansionFeatures
from engines.style_losses import pooled_style_stats
from train.data import HELD_OUT_CLIP, LOOK_PORTRAITS, SHARED_DATA, held_out_images, load_rgb, resolve_style, to_tensor
from train.look_eval import LookRow, look_md, look_photos, look_rows
from train.metrics import Flows, clip_flows, edge_ssim, psnr, ssim, style_distances, warping_error
from train.sheet import fit_height

if TYPE_CHECKING:
    from engines.backends import Backend

STRENGTHS = (0.25, 0.5, 0.75)  # partial strengths of the first style on the sheet
CLIP_BATCH = 8
SPEED_SIZE = (640, 360)  # (width, height): where realtime bench measures its speed ratio too
SPEED_WARMUP = 1  # untimed calls per side before the (also untimed) k estimate: first calls allocate
MAX_STUDENT_CALLS = 50  # student frames per timed round at most, however much faster it is
LABEL_BAR = 18  # pixels of label strip above the side-by-side video


class Stylizer(Protocol):
    """Anything evaluate can judge: a student artifact, or a teacher checkpoint (train.teacher.load_stylizer)."""

    style_names: tuple[str, ...]
    style_refs: list[list[Path]]  # each style's reference images; a fused style has several

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """x (N,3,H,W) in [0,1] on the CPU, weights (N,S), strength (N,1) -> (N,3,H,W) in [0,1], under no_grad.
        The result may live on the stylizer's device."""
        ...


def _style_refs(source: str | list[str] | None, name: str) -> list[Path]:
    """A style's source as model.json records it (a file name, or a list of them for a fused style) in the
    current data root's styles folder, unchecked, so a model loads without the data; without one, the
    style's name as a file-name prefix there."""
    if source is None:
        return [resolve_style(name)[1]]
    return [SHARED_DATA / "styles" / s for s in ([source] if isinstance(source, str) else source)]


class StudentStylizer:
    """A student artifact folder on the PyTorch reference back-end."""

    def __init__(self, path: Path) -> None:
        from engines.loader import load_backend

        self.backend = load_backend(path, "torch")
        self.style_names = self.backend.style_names
        sources = self.backend.artifact.meta.get("provenance", {}).get("styles", {})
        self.style_refs = [_style_refs(sources.get(n), n) for n in self.style_names]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        hp, wp = padded_size(h, w, self.backend.contract.size_multiple)
        xp = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")  # edge padding, as the back-ends pad frames
        sv = strength.float().contiguous().numpy()
        film = self.backend.styles.mix(weights.float().contiguous().numpy(), sv)  # the graph takes mixed FiLM rows
        y = self.backend.run(xp.float().contiguous().numpy(), film, sv)
        return torch.from_numpy(y)[..., :h, :w]


def load_stylizer(path: str | Path) -> Stylizer:
    """A model folder (model.json) -> the student; a .pt/.ckpt file -> the GAN teacher."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return StudentStylizer(p)
    if p.is_file() and p.suffix in (".pt", ".ckpt"):
        from train.teacher import load_stylizer as load_teacher  # imported here: students need no teacher code

        return load_teacher(p)
    raise ValueError(f"{p}: neither a model folder with {META_FILE} nor a .pt/.ckpt teacher checkpoint")


def _short_side(img: Image.Image, size: int) -> Image.Image:
    scale = size / min(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def read_clip(path: Path, frames: int, size: int) -> list[np.ndarray]:
    """The first `frames` frames as RGB uint8, resized to `size` on the short side."""
    import av

    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if len(out) == frames:
                break
            out.append(np.asarray(_short_side(f.to_image(), size)))
    return out


def _stylize(model: Stylizer, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x, weights, strength).float().cpu().clamp(0.0, 1.0)


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) in [0,1] -> (N,H,W,3) uint8, rounded."""
    return (y.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def sheet_columns(names: Sequence[str]) -> list[tuple[str, torch.Tensor, float]]:
    """(label, style weights, strength): each style, two 50/50 blends of neighbours, the first style part-strength."""
    eye = torch.eye(len(names))
    cols = [(n, eye[i], 1.0) for i, n in enumerate(names)]
    cols += [(f"{names[i]}+{names[i + 1]}", (eye[i] + eye[i + 1]) / 2, 1.0) for i in range(min(2, len(names) - 1))]
    cols += [(f"{names[0]} x{s:g}", eye[0], s) for s in STRENGTHS]
    return cols


def contact_sheet(model: Stylizer, photos: list[Image.Image], title: str, height: int, out: Path) -> Path:
    """Rows: photos fitted to `height`; columns: the input and `sheet_columns`, labelled."""
    cols = sheet_columns(model.style_names)
    weights = torch.stack([w for _, w, _ in cols])
    strength = torch.tensor([[s] for _, _, s in cols])
    rows = []
    for img in tqdm(photos, desc=f"sheet {title}", dynamic_ncols=True, leave=False):
        im = fit_height(img, height)
        y = _stylize(model, to_tensor(im)[None].expand(len(cols), -1, -1, -1), weights, strength)
        rows.append([im] + [Image.fromarray(a) for a in _to_uint8(y)])
    font = ImageFont.load_default(size=14)
    col_w, head = max(max(t.width for t in r) for r in rows), 44
    sheet = Image.new("RGB", (col_w * (len(cols) + 1), head + sum(r[0].height for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill="black", font=font)
    for j, label in enumerate(["input"] + [c for c, _, _ in cols]):
        draw.text((j * col_w + 4, 24), label, fill="black", font=font)
    top = head
    for r in rows:
        for j, t in enumerate(r):
            sheet.paste(t, (j * col_w + (col_w - t.width) // 2, top))
        top += r[0].height
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


@dataclass
class ModelResult:
    label: str
    style_names: tuple[str, ...]
    style_distance: dict[str, float]  # per style, mean over photos
    edge_per_style: dict[str, float]  # per style, mean over photos
    input_style_distance: float  # the unstylized photos' mean distance to the same styles
    warp_first: float
    warp_blend: float | None  # None for a one-style model

    @property
    def mean_style_distance(self) -> float:
        return float(np.mean(list(self.style_distance.values())))

    @property
    def edge_ssim(self) -> float:
        """Mean over photos and styles."""
        return float(np.mean(list(self.edge_per_style.values())))

    def on(self, styles: Sequence[str]) -> tuple[float, float]:
        """(style distance, edge SSIM), each the mean over `styles` only."""
        return (float(np.mean([self.style_distance[s] for s in styles])),
                float(np.mean([self.edge_per_style[s] for s in styles])))


def _photo_metrics(model: Stylizer, features: ExpansionFeatures, photos: list[Image.Image],
                   size: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Per-style distance and edge SSIM (each the mean over photos), one-hot at strength 1, and the
    unstylized photos' own mean distance to the styles: the starting point the model moved from."""
    refs = [[to_tensor(load_rgb(p, size, max_long=2 * size)) for p in paths] for paths in model.style_refs]
    stats = pooled_style_stats(features, refs)
    n = len(model.style_names)
    eye = torch.eye(n)
    targets = stats.mix(eye)  # row i: style i
    dist, before, edges = np.zeros(n), np.zeros(n), np.zeros(n)
    for img in tqdm(photos, desc="photo metrics", dynamic_ncols=True, leave=False):
        x = to_tensor(_short_side(img, size))[None]
        y = _stylize(model, x.expand(n, -1, -1, -1), eye, torch.ones(n, 1))
        dist += style_distances(features, y, targets)
        before += style_distances(features, x, targets)
        edges += [edge_ssim(x, y[i : i + 1]) for i in range(n)]
    k = len(photos)
    return (dict(zip(model.style_names, (dist / k).tolist())), dict(zip(model.style_names, (edges / k).tolist())),
            float(before.mean() / k))


def clip_rate(path: Path) -> Fraction:
    """The clip's frame rate, kept to a denominator every encoder takes (MPEG-4 needs under 2^16)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return Fraction(s.average_rate or s.guessed_rate or 25).limit_denominator(1001)


def _clip_outputs(model: Stylizer, frames: list[np.ndarray], weights: torch.Tensor) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in tqdm(range(0, len(frames), CLIP_BATCH), desc="clip", dynamic_ncols=True, leave=False):
        chunk = frames[i : i + CLIP_BATCH]
        x = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).float() / 255.0
        out.extend(_to_uint8(_stylize(model, x, weights.expand(len(chunk), -1), torch.ones(len(chunk), 1))))
    return out


class ClipRuns:
    """Stylized clips by (model, style weights), so the warping error and the side-by-side video share a run."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self._runs: dict[tuple[str, tuple[float, ...]], list[np.ndarray]] = {}

    def __call__(self, label: str, model: Stylizer, weights: torch.Tensor) -> list[np.ndarray]:
        key = (label, tuple(weights.tolist()))
        if key not in self._runs:
            self._runs[key] = _clip_outputs(model, self.frames, weights)
        return self._runs[key]

    def drop(self, label: str) -> None:
        """Forget a model's runs once they are used: a long clip at full size is large."""
        self._runs = {k: v for k, v in self._runs.items() if k[0] != label}


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "model"


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _si(n: float) -> str:
    """1234567 -> '1.23 M': parameter and MAC counts span tiny test nets to full teachers."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


# ---------------------------------------------------------------- fidelity to the teacher


def style_map(reference: Sequence[str], model: Sequence[str], label: str) -> torch.Tensor:
    """(S_ref, S_model) 0/1 matrix taking the reference's style weights to the model's: styles match by name,
    since a student may order them differently or carry more."""
    missing = [n for n in reference if n not in model]
    if missing:
        raise ValueError(f"{label} lacks the teacher's style(s) {', '.join(missing)} (it has {', '.join(model)}); "
                         "styles are matched by name")
    m = torch.zeros(len(reference), len(model))
    for i, n in enumerate(reference):
        m[i, list(model).index(n)] = 1.0
    return m


@dataclass
class Reference:
    """The teacher and its outputs on the held-out photos for the sheet's columns, made once for every model."""

    label: str
    model: Stylizer
    columns: list[tuple[str, torch.Tensor, float]]  # sheet_columns of the teacher's styles
    photos: list[tuple[torch.Tensor, torch.Tensor]]  # (input (1,3,H,W), teacher outputs (C,3,H,W))

    @classmethod
    def build(cls, label: str, model: Stylizer, photos: list[Image.Image], size: int) -> Reference:
        cols = sheet_columns(model.style_names)
        weights = torch.stack([w for _, w, _ in cols])
        strength = torch.tensor([[s] for _, _, s in cols])
        pairs = []
        for img in tqdm(photos, desc="teacher outputs", dynamic_ncols=True, leave=False):
            x = to_tensor(_short_side(img, size))[None]
            pairs.append((x, _stylize(model, x.expand(len(cols), -1, -1, -1), weights, strength)))
        return cls(label, model, cols, pairs)


@dataclass
class Fidelity:
    """One model's outputs against the teacher's: (PSNR dB, SSIM) per sheet column, mean over the photos."""

    label: str
    scores: dict[str, tuple[float, float]]
    overall: tuple[float, float]  # mean over the pure styles and blends (the strength-1 columns)


def fidelity(model: Stylizer, label: str, ref: Reference) -> Fidelity:
    """PSNR is inf where the outputs are identical (the teacher against itself)."""
    weights = torch.stack([w for _, w, _ in ref.columns]) @ style_map(ref.model.style_names, model.style_names, label)
    strength = torch.tensor([[s] for _, _, s in ref.columns])
    scores = np.zeros((len(ref.columns), 2))
    for x, target in tqdm(ref.photos, desc=f"fidelity {label}", dynamic_ncols=True, leave=False):
        y = _stylize(model, x.expand(len(ref.columns), -1, -1, -1), weights, strength)
        scores += [(psnr(y[i], target[i]), ssim(y[i], target[i])) for i in range(len(ref.columns))]
    scores /= len(ref.photos)
    full = [i for i, (_, _, s) in enumerate(ref.columns) if s == 1.0]
    per = {c: (float(p), float(q)) for (c, _, _), (p, q) in zip(ref.columns, scores)}
    return Fidelity(label, per, (float(scores[full, 0].mean()), float(scores[full, 1].mean())))


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
    path = out / f"side_by_side_{_slug(label)}.mp4"
    write_video(side_by_side(parts), rate, path)
    return path


# ---------------------------------------------------------------- speed


@dataclass
class SpeedSide:
    label: str
    runs_on: str
    params: int
    macs: int  # per 640x360 frame
    frames: int  # frames timed
    ms_per_frame: float  # median over the rounds

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_per_frame


@dataclass
class SpeedPair:
    """The teacher and one student, timed in the same interleaved run."""

    teacher: SpeedSide
    student: SpeedSide
    threads: int

    @property
    def speedup(self) -> float:
        return self.teacher.ms_per_frame / self.student.ms_per_frame


def cpu_backend(path: str | Path, threads: int) -> Backend:
    """The back-end `auto` picks for a model folder on a machine without a GPU (onnx-int8, onnx or torch).
    engines' own rule decides, told to leave any GPU out, so a GPU here cannot change the answer."""
    from engines.loader import load_backend

    return load_backend(path, "auto", threads, allow_gpu=False)


FrameFn = Callable[[np.ndarray], object]


def _teacher_fn(net: torch.nn.Module, num_styles: int) -> FrameFn:
    """One frame through the teacher as a back-end takes it, RGB uint8 in and out, first style at strength 1."""
    weights, strength = torch.eye(num_styles)[:1], torch.ones(1, 1)

    @torch.inference_mode()
    def run(frame: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div_(255.0)
        return _to_uint8(net(x, weights, strength).clamp(0.0, 1.0))

    return run


def _ms_per_frame(fn: FrameFn, frames: list[np.ndarray], count: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(count):
        fn(frames[(start + i) % len(frames)])
    return (time.perf_counter() - t0) * 1e3 / count


def time_interleaved(slow: FrameFn, fast: FrameFn, frames: list[np.ndarray], rounds: int) -> tuple[float, float, int]:
    """Median ms/frame of `slow` (one frame a round) and `fast` (k frames a round, k so a round takes about as
    long on each side), alternating which goes first: load on the machine hits both alike and cancels from
    the ratio. Returns (slow ms, fast ms, k)."""
    for i in range(SPEED_WARMUP):
        _ms_per_frame(slow, frames, 1, i)
        _ms_per_frame(fast, frames, 1, i)
    k = int(np.clip(round(_ms_per_frame(slow, frames, 1, 0) / _ms_per_frame(fast, frames, 1, 0)), 1,
                    MAX_STUDENT_CALLS))
    per_slow: list[float] = []
    per_fast: list[float] = []
    for r in range(rounds):
        order = [(per_slow, slow, 1), (per_fast, fast, k)]
        for acc, fn, count in order if r % 2 == 0 else order[::-1]:
            acc.append(_ms_per_frame(fn, frames, count, r * count))
    return float(np.median(per_slow)), float(np.median(per_fast)), k


def speed_frames(video: list[np.ndarray], count: int = 8) -> list[np.ndarray]:
    """A few clip frames at 640x360 (stretched if the clip is not 16:9: the content barely moves the time)."""
    return [np.asarray(Image.fromarray(f).resize(SPEED_SIZE, Image.Resampling.BILINEAR)) for f in video[:count]]


def speed_pair(ref: Reference, label: str, frames: list[np.ndarray], rounds: int,
               threads: int | None = None) -> SpeedPair:
    """The teacher's network (PyTorch eager FP32) against the student folder `label` on its default CPU
    back-end, both on `threads` threads (default: all cores), `rounds` teacher frames."""
    from engines.backends import default_threads
    from engines.student import count_macs as student_macs
    from train.teacher_net import TeacherNet, count_params
    from train.teacher_net import count_macs as teacher_macs

    net = getattr(ref.model, "net", None)
    if not isinstance(net, TeacherNet):
        raise TypeError(f"{ref.label}: speed times the teacher's network; this reference has none")
    threads = threads or default_threads()
    backend = cpu_backend(label, threads)
    vec = backend.contract.weights_vector({ref.model.style_names[0]: 1.0})
    buf = np.empty_like(frames[0])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ms_t, ms_s, k = time_interleaved(_teacher_fn(net, len(ref.model.style_names)),
                                         lambda f: backend.stylize(f, vec, 1.0, out=buf), frames, rounds)
    finally:
        torch.set_num_threads(before)
        backend.close()
    w, h = SPEED_SIZE
    art = backend.artifact
    teacher = SpeedSide(ref.label, "torch eager FP32", count_params(net), teacher_macs(net.config, h, w), rounds, ms_t)
    student = SpeedSide(label, backend.name, count_params(art.load_student()), student_macs(art.config, h, w),
                        rounds * k, ms_s)
    return SpeedPair(teacher, student, threads)


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


# ---------------------------------------------------------------- the command


def _model_list(checkpoints: Sequence[str], teacher: str | None) -> list[str]:
    """The teacher first, then the checkpoints in order; the teacher once (it is the reference, not a student)."""
    if teacher is None:
        return list(checkpoints)
    same = Path(teacher).resolve()
    return [teacher] + [c for c in dict.fromkeys(checkpoints) if Path(c).resolve() != same]


def _model_result(label: str, model: Stylizer, features: ExpansionFeatures, photos: list[Image.Image], size: int,
                  runs: ClipRuns, flows: Flows) -> ModelResult:
    per_style, edges, before = _photo_metrics(model, features, photos, size)
    eye = torch.eye(len(model.style_names))
    first = warping_error(runs.frames, runs(label, model, eye[0]), flows)
    blend = warping_error(runs.frames, runs(label, model, (eye[0] + eye[1]) / 2), flows) if len(eye) > 1 else None
    return ModelResult(label, tuple(model.style_names), per_style, edges, before, first, blend)


def _check_reference(models: dict[str, Stylizer], teacher: str, speed: bool) -> None:
    """Fail before the slow work: every model must carry the teacher's styles, and speed needs its network."""
    ref = models[teacher]
    for label, model in models.items():
        style_map(ref.style_names, model.style_names, label)
    from train.teacher_net import TeacherNet  # here: a student-only evaluation needs no teacher code

    if speed and not isinstance(getattr(ref, "net", None), TeacherNet):
        raise ValueError(f"{teacher}: speed times the teacher's network, so --teacher must be a .pt teacher "
                         "checkpoint (or pass --no-speed)")


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
    models = {label: load_stylizer(label) for label in _model_list(checkpoints, ref_label)}
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
        contact_sheet(model, photos, label, height, out / f"sheet_{_slug(label)}.png")
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
