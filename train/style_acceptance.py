"""`python -m train style-acceptance`: the own-style fit (issue 25) judged by the look measure (issue 24).

Five parts, one run, written to --out as acceptance.md, acceptance.json and two contact sheets:

- **Leave-one-out.** Each bank style S is fitted from its own reference pictures with the shipped fit
  (engines/style_fit.py), which may not start from S's trained row (`exclude=[S]`), into a fresh row.
  The fitted row and the trained row are scored alike on the look photos (train/look.py): style gain
  towards S's references, and top-1 (is S's reference the nearest among the bank's?). Bar: the fitted
  gain is at least 85% of the trained gain.
- **Unseen references.** Styles fitted from the pictures in shared/data/styles that no bank style uses
  (Turner, Udnie, Mondrian, the Sakai screen); top-1 among the bank's and these references together.
  Sheet: each reference beside its outputs on a few photos.
- **Fusion.** A painting (Turner) and a line drawing (the woodcut fish) fused into one style, next to each
  fitted alone; the gain towards each reference for all three. The woodcut is the bank's `lineart`
  reference, so these fits may not start from the `lineart` row.
- **Steady.** Warping error (Lai et al., train/metrics.py) on the held-out clip for every fitted row,
  against the mean of the bank's trained rows. Bar: within 1.2x.
- **Speed.** Wall time and steps of each fit on this machine; optionally (--curve-steps) the fitted gain
  against the number of steps, the figure that sets the fit's budget beside live sessions.

Photos are RGB uint8 (H, W, 3) arrays; rows are (F,) float32 FiLM vectors of the bundled student.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from train.data import HELD_OUT_CLIP, SHARED_DATA
from train.eval_metrics import read_clip, short_side
from train.look import descriptor, distance, mean_descriptor

# Bank-external references (issue 25): shared/data/styles files no bank style is trained on.
UNSEEN = {
    "turner": ("turner_shipwreck_of_the_minotaur_c1810.jpg",),
    "udnie": ("picabia_udnie_1913.jpg",),
    "mondrian": ("mondrian_tableau_no2_composition_vii_1913.jpg",),
    "sakai": ("sakai_hoitsu_flowering_tree_screen.jpg",),
}
# Two unlike pictures fused into one style: a painting and a black-on-white line drawing (woodcut).
FUSION = (("turner", "turner_shipwreck_of_the_minotaur_c1810.jpg"),
          ("woodcut", "lineart_woodcut_fish_openclipart.png"))
FUSION_EXCLUDE = ("lineart",)  # the woodcut is lineart's reference: no fusion fit may start from that row
# Permissive photos for the committed sheets (bsds500 is non-commercial: scored on, never shown in docs).
SHEET_PHOTOS = ("content/kodak/kodim04.jpg", "content/kodak/kodim23.jpg",
                "content/cc_by_video_frames/tears_of_steel_f040.jpg")
RATIO_BAR = 0.85
WARP_BAR = 1.2
FIT_ROW = "__acceptance_fit__"

Log = Callable[[str], None]


# ---------------------------------------------------------------- rendering and scoring


class RowRenderer:
    """Photos through a back-end with any FiLM row: the row joins the bank as one fitted style, as the
    server does it (engines/style_bank.py), so a trained row and a fitted one take the same path."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.trained = tuple(backend.style_names[: backend.styles.num_trained])

    def row(self, name: str) -> np.ndarray:
        return self.backend.styles.row(name)

    def __call__(self, frames: Sequence[np.ndarray], row: np.ndarray, strength: float = 1.0) -> list[np.ndarray]:
        self.backend.set_styles({FIT_ROW: np.asarray(row, np.float32)})
        w = self.backend.weights_vector({FIT_ROW: 1.0})
        out = []
        for f in frames:  # one at a time: the photos differ in size
            out.append(self.backend.stylize_batch(np.ascontiguousarray(f)[None], w, strength)[0])
        return out


@dataclass(frozen=True)
class RowLook:
    """One row's look on the photos: gain towards its own references, and the top-1 hit rate."""

    gain: float
    top1: float
    gains: tuple[float, ...]  # per photo


def row_look(inputs: Sequence[list[np.ndarray]], outputs: Sequence[np.ndarray], refs: Sequence[list[np.ndarray]],
             j: int) -> RowLook:
    """The look measure (train/look.py `score`) for one style: `inputs` are the photos' descriptors,
    `outputs` the photos in that style, `refs` every candidate style's reference descriptor and `j` the
    intended one. Gain = 1 - d(out, ref_j) / d(in, ref_j); a hit = ref_j is the nearest of `refs`."""
    gains, hits = [], []
    for d_in, out in zip(inputs, outputs, strict=True):
        d_out = descriptor(out)
        to_refs = [distance(d_out, r) for r in refs]
        hits.append(float(int(np.argmin(to_refs)) == j))
        base = distance(d_in, refs[j])
        gains.append(1.0 - to_refs[j] / base if base > 0 else 0.0)
    return RowLook(float(np.mean(gains)), float(np.mean(hits)), tuple(gains))


def nearest_style(outputs: Sequence[np.ndarray], refs: Sequence[list[np.ndarray]], names: Sequence[str]) -> str:
    """The bank style whose reference is nearest to the most of `outputs` (the top-1 vote of the look measure;
    a tie goes to the smaller mean distance): the trained style a fitted one is most like."""
    d = np.array([[distance(descriptor(o), r) for r in refs] for o in outputs])
    votes = np.bincount(d.argmin(1), minlength=len(refs))
    tied = np.flatnonzero(votes == votes.max())
    return names[int(tied[np.argmin(d.mean(0)[tied])])]


def gain_towards(inputs: Sequence[list[np.ndarray]], outputs: Sequence[np.ndarray], ref: list[np.ndarray]) -> float:
    """Mean style gain of `outputs` towards one reference descriptor."""
    return row_look(inputs, outputs, [ref], 0).gain


def ratio(fitted: float, trained: float) -> float:
    """Fitted gain as a fraction of the trained gain (nan where the trained style gains nothing)."""
    return fitted / trained if trained > 1e-9 else float("nan")


def passes_ratio(fitted: float, trained: float, bar: float = RATIO_BAR) -> bool:
    r = ratio(fitted, trained)
    return math.isfinite(r) and r >= bar


# ---------------------------------------------------------------- inputs


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------- sheets


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit_cell(rgb: np.ndarray, h: int, max_w: int | None = None) -> Image.Image:
    img = Image.fromarray(rgb)
    w = round(img.width * h / img.height)
    if max_w is not None and w > max_w:
        h, w = round(h * max_w / w), max_w
    return img.resize((max(1, w), max(1, h)), Image.Resampling.LANCZOS)


def grid_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray | None]]], cell_h: int, title: str) -> Image.Image:
    """A labelled grid: rows of (label, image or None) cells, each image scaled to `cell_h` (wide ones
    narrowed to 1.8 x cell_h), on white."""
    pad, label_h, title_h = 6, 18, 26
    col_w = 0
    cells = []
    for r in rows:
        cr = [(lab, None if im is None else _fit_cell(im, cell_h, round(1.8 * cell_h))) for lab, im in r]
        col_w = max([col_w] + [c.width for _, c in cr if c is not None])
        cells.append(cr)
    ncol = max(len(r) for r in cells)
    width = pad + ncol * (col_w + pad)
    height = title_h + len(cells) * (cell_h + label_h + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 4), title, fill="black", font=_font(16))
    font = _font(13)
    for i, r in enumerate(cells):
        y = title_h + i * (cell_h + label_h + pad)
        for k, (lab, im) in enumerate(r):
            x = pad + k * (col_w + pad)
            draw.text((x, y), lab, fill="black", font=font)
            if im is not None:
                sheet.paste(im, (x + (col_w - im.width) // 2, y + label_h + (cell_h - im.height) // 2))
    return sheet


def save_jpeg(img: Image.Image, path: Path, limit_kb: int = 390) -> int:
    """Write a JPEG under `limit_kb`, lowering the quality as needed; returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for q in (88, 82, 76, 70, 62, 55):
        img.save(path, "JPEG", quality=q, optimize=True, progressive=True)
        if path.stat().st_size <= limit_kb * 1024:
            break
    return path.stat().st_size


# ---------------------------------------------------------------- the run


@dataclass
class AcceptanceConfig:
    out: str = "acceptance"
    model: str = ""  # "": the bundled student
    backend: str = "onnx"  # the graph every CPU back-end runs (torch eager is 5-8x slower here)
    styles: list[str] = field(default_factory=list)  # leave-one-out styles (default: every bank style)
    unseen: list[str] = field(default_factory=lambda: list(UNSEEN))
    photos: int = 0  # look photos to score on (0: all of train.data.LOOK_PHOTOS)
    steps: int = 0  # 0: the shipped fit's (engines/style_fit.FitConfig), as are budget and threads
    budget_s: float = 0.0
    fit_threads: int = 0
    fit_set: list[str] = field(default_factory=list)  # KEY=VALUE overrides of the shipped FitConfig, e.g. clip_weight=0
    threads: int = 2  # for rendering
    clip: str = ""  # warping-error clip (default: the held-out clip)
    clip_frames: int = 30
    clip_short: int = 256
    curve_steps: list[int] = field(default_factory=list)  # e.g. 10 20 40: gain against steps
    curve_styles: list[str] = field(default_factory=lambda: ["vangogh", "lineart", "munch"])
    sheet_height: int = 150
    sheets_dir: str = ""  # where the two JPEG sheets go (default: --out)
    skip_loo: bool = False
    skip_unseen: bool = False
    skip_fusion: bool = False


def fit_overrides(items: Sequence[str]) -> dict[str, object]:
    """KEY=VALUE strings as FitConfig fields, each value parsed as the field's default is typed."""
    from engines.style_fit import FitConfig

    defaults = asdict(FitConfig())
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"--fit-set {item!r}: expected KEY=VALUE with KEY one of {', '.join(defaults)}")
        kind = type(defaults[key])
        out[key] = tuple(int(v) for v in value.split(",")) if kind is tuple else kind(value)
    return out


def _fit(art, pictures: list[np.ndarray], cfg: AcceptanceConfig, exclude: Sequence[str] = (),
         steps: int | None = None, budget: float | None = None, weights: Sequence[float] | None = None):
    from engines.style_fit import FitConfig, fit_style

    shipped = FitConfig()
    fc = replace(shipped, steps=steps or cfg.steps or shipped.steps,
                 time_budget_s=budget or cfg.budget_s or shipped.time_budget_s,
                 threads=cfg.fit_threads or shipped.threads, **fit_overrides(cfg.fit_set))
    return fit_style(art, pictures, weights, cfg=fc, exclude=exclude)


def run_acceptance(cfg: AcceptanceConfig, log: Log = print) -> dict:
    """Every part of the acceptance; returns the figures (also written to cfg.out)."""
    import torch

    from engines.artifact import load_artifact
    from engines.loader import load_backend
    from train.data import LOOK_PHOTOS
    from train.look_eval import look_photos
    from train.metrics import clip_flows, warping_error

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sheets = Path(cfg.sheets_dir) if cfg.sheets_dir else out
    t_start = time.monotonic()

    def say(msg: str) -> None:
        log(f"[{time.monotonic() - t_start:6.0f} s] {msg}")

    art = load_artifact(cfg.model or None)
    backend = load_backend(cfg.model or None, cfg.backend, cfg.threads)
    render = RowRenderer(backend)
    names = render.trained
    sources = art.meta.get("provenance", {}).get("styles", {})
    styles_dir = SHARED_DATA / "styles"
    bank_pics = {n: [_rgb(styles_dir / s) for s in ([sources[n]] if isinstance(sources[n], str) else sources[n])]
                 for n in names}
    bank_refs = [mean_descriptor([descriptor(p) for p in bank_pics[n]]) for n in names]
    photo_names = LOOK_PHOTOS[: cfg.photos] if cfg.photos else LOOK_PHOTOS
    photos = look_photos(names=photo_names)
    if not photos:
        raise FileNotFoundError(f"no look photos under {SHARED_DATA}; set STYLIZER_DATA")
    inputs = [descriptor(p) for p in photos]
    clip_path = Path(cfg.clip) if cfg.clip else SHARED_DATA / HELD_OUT_CLIP
    video = read_clip(clip_path, cfg.clip_frames, cfg.clip_short)
    flows = clip_flows(video)
    floor = warping_error(video, video, flows)

    def warp(row: np.ndarray) -> float:
        return warping_error(video, render(video, row), flows)

    say(f"model {art.path.name} ({art.weights_sha256[:12]}), back-end {backend.name}, {len(photos)} look photos, "
        f"clip {clip_path.name} ({len(video)} frames, input floor {floor:.5f})")
    result: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "model": str(art.path), "weights_sha256": art.weights_sha256, "backend": backend.name,
                    "photos": list(photo_names[: len(photos)]), "clip": clip_path.name, "clip_frames": len(video),
                    "warp_input_floor": floor, "config": asdict(cfg)}
    from engines.style_fit import FitConfig

    shipped = FitConfig()
    result["fit"] = {"steps": cfg.steps or shipped.steps, "budget_s": cfg.budget_s or shipped.time_budget_s,
                     "threads": cfg.fit_threads or shipped.threads, "overrides": list(cfg.fit_set)}

    # The bank's trained rows: the reference gains, top-1 and warping error.
    trained: dict[str, dict] = {}
    for j, n in enumerate(names):
        look = row_look(inputs, render(photos, render.row(n)), bank_refs, j)
        trained[n] = {"gain": look.gain, "top1": look.top1, "warp": warp(render.row(n))}
        say(f"trained {n}: gain {look.gain:.3f}, top-1 {look.top1:.2f}, warping error {trained[n]['warp']:.5f}")
    bank_warp = float(np.mean([t["warp"] for t in trained.values()]))
    result["trained"] = trained
    result["bank_warp_mean"] = bank_warp
    fits: list[dict] = []  # every fit's speed

    def record_fit(label: str, res) -> dict:
        d = {"label": label, "seconds": res.seconds, "steps": res.steps, "start": res.start,
             "loss_first": res.loss_first, "loss_last": res.loss_last}
        fits.append(d)
        return d

    # Leave-one-out.
    loo: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    for n in ([] if cfg.skip_loo else (cfg.styles or list(names))):
        j = names.index(n)
        say(f"leave-one-out: fitting {n} from {len(bank_pics[n])} picture(s) without its trained row ...")
        res = _fit(art, bank_pics[n], cfg, exclude=[n])
        vectors[f"loo/{n}"] = res.vector
        look = row_look(inputs, render(photos, res.vector), bank_refs, j)
        w = warp(res.vector)
        loo[n] = {"trained_gain": trained[n]["gain"], "fitted_gain": look.gain,
                  "ratio": ratio(look.gain, trained[n]["gain"]), "trained_top1": trained[n]["top1"],
                  "fitted_top1": look.top1, "warp": w, "warp_x_bank": w / bank_warp,
                  **record_fit(f"loo/{n}", res)}
        say(f"  {n}: {res.steps} steps in {res.seconds:.1f} s from {res.start}; gain {look.gain:.3f} vs trained "
            f"{trained[n]['gain']:.3f} ({100 * loo[n]['ratio']:.0f}%), top-1 {look.top1:.2f} vs "
            f"{trained[n]['top1']:.2f}, warping {w / bank_warp:.2f}x bank")
    result["leave_one_out"] = loo

    # Unseen references.
    unseen: dict[str, dict] = {}
    unseen_pics = {k: [_rgb(styles_dir / f) for f in UNSEEN[k]] for k in cfg.unseen}
    unseen_refs = {k: mean_descriptor([descriptor(p) for p in v]) for k, v in unseen_pics.items()}
    all_refs = bank_refs + list(unseen_refs.values())
    sheet_photos = [np.asarray(short_side(Image.fromarray(_rgb(SHARED_DATA / p)), 360))
                    for p in SHEET_PHOTOS if (SHARED_DATA / p).is_file()]
    unseen_rows = []
    for k in ([] if cfg.skip_unseen else cfg.unseen):
        say(f"unseen: fitting {k} ({', '.join(UNSEEN[k])}) ...")
        res = _fit(art, unseen_pics[k], cfg)
        vectors[f"unseen/{k}"] = res.vector
        outs = render(photos, res.vector)
        look = row_look(inputs, outs, all_refs, len(bank_refs) + list(unseen_refs).index(k))
        w = warp(res.vector)
        unseen[k] = {"gain": look.gain, "top1": look.top1, "warp": w, "warp_x_bank": w / bank_warp,
                     "like": nearest_style(outs, bank_refs, names), **record_fit(f"unseen/{k}", res)}
        say(f"  {k}: {res.steps} steps in {res.seconds:.1f} s from {res.start}; gain {look.gain:.3f}, top-1 "
            f"{look.top1:.2f} (of {len(all_refs)} references), warping {w / bank_warp:.2f}x bank")
        unseen_rows.append([(f"{k}: reference", unseen_pics[k][0])]
                           + [(f"{k} (fitted)", o) for o in render(sheet_photos, res.vector)])
    result["unseen"] = unseen
    if unseen_rows:
        head = [("reference", None)] + [(f"photo {i + 1}", p) for i, p in enumerate(sheet_photos)]
        sheet = grid_sheet([head, *unseen_rows], cfg.sheet_height,
                           "Styles fitted from references the bank never saw (engines/style_fit, strength 1)")
        size = save_jpeg(sheet, sheets / "styles_unseen.jpg")
        say(f"sheet {sheets / 'styles_unseen.jpg'} ({size // 1024} KB)")

    # Fusion: A alone, B alone, A+B fused (one target), none starting from the lineart row.
    if not cfg.skip_fusion:
        (a_name, a_file), (b_name, b_file) = FUSION
        a_pic, b_pic = _rgb(styles_dir / a_file), _rgb(styles_dir / b_file)
        a_ref, b_ref = descriptor(a_pic), descriptor(b_pic)
        rows: dict[str, np.ndarray] = {}
        fus: dict[str, dict] = {}
        for label, pics in ((f"{a_name} alone", [a_pic]), (f"{b_name} alone", [b_pic]),
                            (f"{a_name}+{b_name} fused", [a_pic, b_pic])):
            say(f"fusion: fitting {label} ...")
            res = _fit(art, pics, cfg, exclude=FUSION_EXCLUDE)
            rows[label] = res.vector
            vectors[f"fusion/{label}"] = res.vector
            outs = render(photos, res.vector)
            w = warp(res.vector)
            fus[label] = {"gain_a": gain_towards(inputs, outs, a_ref), "gain_b": gain_towards(inputs, outs, b_ref),
                          "gain_fused_ref": gain_towards(inputs, outs, mean_descriptor([a_ref, b_ref])),
                          "warp": w, "warp_x_bank": w / bank_warp, "like": nearest_style(outs, bank_refs, names),
                          **record_fit(f"fusion/{label}", res)}
            say(f"  {label}: {res.steps} steps in {res.seconds:.1f} s from {res.start}; gain towards {a_name} "
                f"{fus[label]['gain_a']:.3f}, towards {b_name} {fus[label]['gain_b']:.3f}, warping "
                f"{w / bank_warp:.2f}x bank")
        result["fusion"] = {"a": a_name, "b": b_name, "rows": fus}
        labels = list(rows)
        grid = [[(f"{a_name}: reference", a_pic), (f"{b_name}: reference", b_pic), ("", None), ("", None)]]
        outs_by = {lab: render(sheet_photos, rows[lab]) for lab in labels}
        for i, p in enumerate(sheet_photos):
            grid.append([(f"photo {i + 1}", p)] + [(lab, outs_by[lab][i]) for lab in labels])
        sheet = grid_sheet(grid, cfg.sheet_height, f"Fusion: {a_name} + {b_name} (one fused target) beside each "
                                                   "fitted alone")
        size = save_jpeg(sheet, sheets / "styles_fusion.jpg")
        say(f"sheet {sheets / 'styles_fusion.jpg'} ({size // 1024} KB)")

    # Gain against steps (the budget a fit needs).
    curve: list[dict] = []
    for n in (cfg.curve_styles if cfg.curve_steps else []):
        j = names.index(n)
        for steps in cfg.curve_steps:
            say(f"steps curve: {n} at {steps} steps ...")
            res = _fit(art, bank_pics[n], cfg, exclude=[n], steps=steps, budget=1e9)
            look = row_look(inputs, render(photos, res.vector), bank_refs, j)
            curve.append({"style": n, "steps": res.steps, "seconds": res.seconds, "gain": look.gain,
                          "ratio": ratio(look.gain, trained[n]["gain"]), "top1": look.top1, "start": res.start})
            say(f"  {n} {steps} steps: {res.seconds:.1f} s, gain {look.gain:.3f} "
                f"({100 * curve[-1]['ratio']:.0f}% of trained), top-1 {look.top1:.2f}")
        if n in loo:
            curve.append({"style": n, "steps": loo[n]["steps"], "seconds": loo[n]["seconds"],
                          "gain": loo[n]["fitted_gain"], "ratio": loo[n]["ratio"], "top1": loo[n]["fitted_top1"],
                          "start": loo[n]["start"], "budget_bound": True})
    result["steps_curve"] = curve
    result["fits"] = fits
    result["seconds_total"] = round(time.monotonic() - t_start, 1)
    np.savez(out / "vectors.npz", **{k.replace("/", "__").replace(" ", "_").replace("+", "_"): v
                                     for k, v in vectors.items()})
    (out / "acceptance.json").write_text(json.dumps(result, indent=1, default=float))
    md = acceptance_md(result)
    (out / "acceptance.md").write_text(md + "\n")
    say(f"written {out / 'acceptance.md'} and {out / 'acceptance.json'}")
    return result


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if math.isfinite(v) else "n/a"


def steady_ratio(warp: float, bank_mean: float, like: float | None) -> float:
    """The steadiness bar's figure: a fitted style's warping error over the bank's mean, or over the trained
    style it is most like where that one is less steady (the bank's own woodcut is 3.4x its mean: a line style
    is held to the bank's line style, not to its paintings). Bar: at most WARP_BAR."""
    return warp / max(bank_mean, like or 0.0)


def _like_warp(r: dict, v: dict) -> float | None:
    """The warping error of the trained style a fit looks most like (`nearest_style`), where it is known."""
    return r.get("trained", {}).get(v.get("like"), {}).get("warp")


def _steady_line(r: dict, rows: dict[str, dict]) -> str:
    figs = {k: steady_ratio(v["warp"], r["bank_warp_mean"], _like_warp(r, v)) for k, v in rows.items()}
    worst = max(figs, key=figs.__getitem__)
    return (f"Steady: {sum(x <= WARP_BAR for x in figs.values())} of {len(figs)} within {WARP_BAR}x of the larger of "
            f"the bank's mean and the bank style each looks like (highest {figs[worst]:.2f}x, {worst}).")


def _x_like(r: dict, v: dict) -> str:
    """A fit's warping error over that of the trained style it looks most like (`nearest_style`): a woodcut
    flickers like the bank's woodcut, not like its paintings (the bank's own lineart is 3.4x its mean)."""
    base = _like_warp(r, v)
    return f"{v['warp'] / base:.2f} ({v['like']})" if base else "n/a"


def acceptance_md(r: dict) -> str:
    """The tables of a run (run_acceptance's result) as markdown."""
    lines = [f"Measured {r['date']} on {r['machine']}; model {Path(r['model']).name} "
             f"({r['weights_sha256'][:12]}), back-end {r['backend']}, {len(r['photos'])} look photos, "
             f"warping error on {r['clip']} ({r['clip_frames']} frames; the input's own floor "
             f"{r['warp_input_floor']:.5f}, the bank's mean {r['bank_warp_mean']:.5f})."]
    if "fit" in r:
        f = r["fit"]
        lines[0] += (f" Fits: engines/style_fit with at most {f['steps']} steps or {f['budget_s']:g} s of fitting, "
                     f"{f['threads']} thread(s).")
        if f.get("overrides"):
            lines[0] += f" Fit settings changed from the shipped ones: {', '.join(f['overrides'])}."
    tr = r.get("trained") or {}
    if tr:
        lines += ["", "### The bank's trained rows (top-1 among the bank's references)", "",
                  "| " + " | ".join(["", *tr]) + " | mean |", "|---|" + "---:|" * (len(tr) + 1)]
        for key, label, fmt in (("gain", "gain", ".2f"), ("top1", "top-1", ".2f"), ("warp", "warping error", ".4f")):
            vals = [v[key] for v in tr.values()]
            lines.append(f"| {label} | " + " | ".join(f"{x:{fmt}}" for x in vals) + f" | {np.mean(vals):{fmt}} |")
    loo = r.get("leave_one_out") or {}
    if loo:
        ratios = [v["ratio"] for v in loo.values()]
        lines += ["", f"### Leave-one-out (bar: fitted gain >= {RATIO_BAR:.0%} of trained; warping <= {WARP_BAR}x the "
                      "larger of the bank's mean and the trained row's)",
                  "", "| style | trained gain | fitted gain | ratio | top-1 trained | top-1 fitted | warping x bank "
                      "| warping x its trained row | steps | s | started from |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        own = {n: v["warp"] / r["trained"][n]["warp"] for n, v in loo.items()}
        for n, v in loo.items():
            lines.append(f"| {n} | {v['trained_gain']:.2f} | {v['fitted_gain']:.2f} | {_pct(v['ratio'])} | "
                         f"{v['trained_top1']:.2f} | {v['fitted_top1']:.2f} | {v['warp_x_bank']:.2f} | "
                         f"{own[n]:.2f} | {v['steps']} | {v['seconds']:.0f} | {v['start']} |")
        mean = lambda k: float(np.mean([v[k] for v in loo.values()]))  # noqa: E731
        lines.append(f"| **mean** | {mean('trained_gain'):.2f} | {mean('fitted_gain'):.2f} | "
                     f"{_pct(float(np.mean(ratios)))} | {mean('trained_top1'):.2f} | {mean('fitted_top1'):.2f} | "
                     f"{mean('warp_x_bank'):.2f} | {float(np.mean(list(own.values()))):.2f} | | "
                     f"{mean('seconds'):.0f} | |")
        ok = sum(1 for x in ratios if math.isfinite(x) and x >= RATIO_BAR)
        steady = {n: steady_ratio(v["warp"], r["bank_warp_mean"], r["trained"][n]["warp"]) for n, v in loo.items()}
        lines += ["", f"{ok} of {len(ratios)} styles reach {RATIO_BAR:.0%}; lowest ratio {_pct(min(ratios))}. "
                      f"Steady: {sum(x <= WARP_BAR for x in steady.values())} of {len(steady)} are within {WARP_BAR}x "
                      "of the larger of the bank's mean warping error and their trained row's (highest "
                      f"{max(steady.values()):.2f}x, {max(steady, key=steady.__getitem__)})."]
    un = r.get("unseen") or {}
    if un:
        lines += ["", "### Unseen references (top-1 among the bank's and these references)", "",
                  "| style | gain | top-1 | warping x bank | warping x the bank style it looks like | steps | s "
                  "| started from |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for k, v in un.items():
            lines.append(f"| {k} | {v['gain']:.2f} | {v['top1']:.2f} | {v['warp_x_bank']:.2f} | "
                         f"{_x_like(r, v)} | {v['steps']} | {v['seconds']:.0f} | {v['start']} |")
        lines += ["", _steady_line(r, un)]
    fu = r.get("fusion")
    if fu:
        a, b = fu["a"], fu["b"]
        lines += ["", f"### Fusion: {a} + {b} (no fit starts from the lineart row)", "",
                  f"| style | gain towards {a} | gain towards {b} | towards both (mean descriptor) | warping x bank "
                  "| warping x the bank style it looks like | steps | s | started from |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for lab, v in fu["rows"].items():
            lines.append(f"| {lab} | {v['gain_a']:.2f} | {v['gain_b']:.2f} | {v['gain_fused_ref']:.2f} | "
                         f"{v['warp_x_bank']:.2f} | {_x_like(r, v)} | {v['steps']} | {v['seconds']:.0f} | "
                         f"{v['start']} |")
        lines += ["", _steady_line(r, fu["rows"])]
    fits = r.get("fits") or []
    if fits:
        secs = [f["seconds"] for f in fits]
        steps = [f["steps"] for f in fits]
        lines += ["", f"### Speed: {len(fits)} fits, {min(secs):.0f}-{max(secs):.0f} s each (mean {np.mean(secs):.0f} s), "
                      f"{min(steps)}-{max(steps)} steps"]
    curve = r.get("steps_curve") or []
    if curve:
        lines += ["", "### Fitted gain against steps (leave-one-out styles)", "",
                  "| style | steps | s | gain | % of trained | top-1 |", "|---|---:|---:|---:|---:|---:|"]
        for c in sorted(curve, key=lambda c: (c["style"], c["steps"])):
            lines.append(f"| {c['style']} | {c['steps']}{' (budget)' if c.get('budget_bound') else ''} | "
                         f"{c['seconds']:.0f} | {c['gain']:.2f} | {_pct(c['ratio'])} | {c['top1']:.2f} |")
    return "\n".join(lines)
