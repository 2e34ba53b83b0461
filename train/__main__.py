"""python -m train: training and evaluation commands."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path


def _add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        t = hints[f.name]
        if t is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(t) is list:
            (item,) = typing.get_args(t) or (str,)
            parser.add_argument(flag, nargs="+", type=item, default=default,
                                help=f"default: {' '.join(map(str, default))}")
        else:
            parser.add_argument(flag, type=t, default=default, help=f"default: {default}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Train and evaluate stylizer models.")
    sub = parser.add_subparsers(dest="command", required=True)

    from train.perceptual import PerceptualConfig

    p = sub.add_parser("perceptual", help="train the live student straight from style references (the bundled model's recipe)",
                       description="Feed-forward training of the live student over a bank of styles: perceptual "
                                   "statistics, image-space colour and gradient distributions, content, trained "
                                   "strength and shift stability. Styles are NAME=PATH, a path, a file-name prefix "
                                   "in shared/data/styles, or NAME=REF,REF,... for one style fused from several "
                                   "references. --init grows a smaller start or shrinks a deeper one; --teacher "
                                   "distils a frozen painting teacher's block means on top of the style terms; "
                                   "--toon-weight holds lineart and cartoon to a line drawing and a cel (flat "
                                   "fills, dark outlines) of each photo (train/toon.py). "
                                   "scripts/train_default.sh has the bundled model's exact commands.")
    _add_dataclass_args(p, PerceptualConfig)

    s = sub.add_parser("sheet", help="contact sheet: held-out photos x styles (plus a blend)")
    s.add_argument("model", nargs="?", default=None, help="model folder (default: the bundled model)")
    s.add_argument("--out", default="contact_sheet.png")
    s.add_argument("--height", type=int, default=240)

    fr = sub.add_parser("frontier", help="look/speed frontier: students at full and reduced internal resolution",
                        description="Score each student folder on the look photos (top-1, style gain, faces kept) at "
                                    "full and reduced internal resolution (bilinear and edge-guided upsampling), "
                                    "and time it per 640x360 frame on the default CPU back-end, in one run.")
    fr.add_argument("models", nargs="+", help="student model folders")
    fr.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.75, 0.5],
                    help="internal scales to run the network at (default: 1 0.75 0.5)")

    t = sub.add_parser("teacher", help="train the multi-reference GAN teacher from a preset",
                       description="Train the style-conditioned GAN teacher over a bank of reference styles. "
                                   "Settings come from a preset TOML (a path, or a name in train/presets: "
                                   "teacher_cpu, teacher_gpu, teacher_tiny), then --set overrides. "
                                   "Under torchrun it trains with DDP (gloo on CPUs, NCCL on GPUs).")
    t.add_argument("--preset", default="teacher_cpu", help="preset TOML (default: teacher_cpu)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, TOML value syntax (e.g. --set steps=2000 --set 'styles=[\"vangogh\"]')")
    t.add_argument("--style", dest="extra_styles", action="append", default=[], metavar="REF",
                   help="add a style: NAME=PATH, an image path of your own, or a file-name prefix in shared/data/styles")
    t.add_argument("--fuse", action="append", nargs="+", default=[], metavar="REF",
                   help="add ONE style fused from several references' pooled statistics "
                        "(first item may be NAME=ref); repeat for more fused styles")
    t.add_argument("--resume", default=None, help="checkpoint.pt to continue from (same styles and config)")
    t.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this checkpoint's weights at step 0 with fresh optimisers (same styles; the "
                        "config may differ, e.g. style_filters turns its shared filters into per-style banks)")

    dd = sub.add_parser("distill", help="distil a teacher checkpoint into the live student (an engines artifact)",
                        description="Train the tiny live student against a frozen GAN teacher: L1 + perceptual "
                                    "output matching, an adversarial term and the temporal terms, plus a same-size "
                                    "ablation twin without the temporal terms. Writes OUT/model (the artifact "
                                    "`realtime serve --engine` takes) and OUT/ablation.")
    dd.add_argument("--teacher", required=True,
                    help="teacher checkpoint (checkpoint.pt or its teacher.pt copy), or a painting teacher's model folder")
    dd.add_argument("--critic", default=None,
                    help="teacher training checkpoint, or a painting teacher's critic.pt, whose discriminator "
                         "initialises the critic (default: the one --teacher holds, or the critic.pt beside its "
                         "folder, "
                         "else a fresh critic)")
    dd.add_argument("--preset", default="distill_cpu", help="preset TOML (default: distill_cpu)")
    dd.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting, TOML value syntax")

    e = sub.add_parser("eval", help="metrics table and contact sheets for students and teachers, side by side",
                       description="Style distance, edge SSIM and warping error on the held-out photos and clip, "
                                   "one table for all checkpoints, and a contact sheet for each. With --teacher, "
                                   "also each model's PSNR/SSIM against the teacher, side-by-side videos of the "
                                   "clip and a CPU speed table.")
    e.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="a model folder (model.json) or a teacher checkpoint (.pt/.ckpt)")
    e.add_argument("--out", required=True, help="folder for metrics.md, metrics.csv and the sheets")
    e.add_argument("--size", type=int, default=384, help="short side of the photos and clip the metrics run at")
    e.add_argument("--clip", default=None, help="video for the warping error (default: the held-out clip)")
    e.add_argument("--frames", type=int, default=60, help="first frames of the clip to use")
    e.add_argument("--height", type=int, default=192, help="photo height on the contact sheets")
    e.add_argument("--teacher", default=None, metavar="CKPT",
                   help="the reference teacher checkpoint: it heads the table, and every other checkpoint also gets "
                        "PSNR/SSIM against it (fidelity table), a side_by_side_<name>.mp4 of the clip and, with "
                        "--speed, a CPU speed comparison")
    e.add_argument("--speed", action=argparse.BooleanOptionalAction, default=None,
                   help="time the teacher (PyTorch eager FP32) against each student folder on its default CPU "
                        "back-end at 640x360, interleaved (default: on with --teacher)")
    e.add_argument("--speed-frames", type=int, default=20,
                   help="teacher frames timed per student; the student runs as many times more as it is faster, "
                        "so both sides take about equal time (default: 20)")
    e.add_argument("--speed-threads", type=int, default=None,
                   help="threads for each side of the speed comparison (default: all cores)")

    ff = sub.add_parser("fidelity-fixture", help="store the teacher's outputs for the bundled student's fidelity test",
                        description="Store the teacher's outputs on two held-out photos in tests/fidelity, score the "
                                    "student against them, and set the PSNR floors for the bundled student's regression test.")
    ff.add_argument("--teacher", required=True,
                    help="teacher checkpoint (.pt), or a model folder whose PyTorch FP32 outputs are the reference "
                         "(a student trained without a teacher)")
    ff.add_argument("--student", default="engines/models/default",
                    help="student model folder to score and set the floors from (default: the bundled one)")
    ff.add_argument("--out", default="tests/fidelity", help="fixture folder (default: tests/fidelity)")

    cp = sub.add_parser("clip-pairs", help="bundle real-motion pairs for the style fit's temporal term",
                        description="Two consecutive frames of each permissive training clip (never the held-out "
                                    "one), their DIS flow and occlusion mask, cropped where the most valid motion is, "
                                    "written where the style fit reads them (engines/calibration/clip_pairs.npz).")
    cp.add_argument("--out", default=None, help="npz to write (default: the bundled engines/calibration/clip_pairs.npz)")

    from train.style_acceptance import AcceptanceConfig

    sa = sub.add_parser("style-acceptance", help="the own-style fit judged by the look measure (issue 25)",
                        description="Leave-one-out fits of the bank's styles against their trained rows, styles "
                                    "fitted from unseen references (a contact sheet), a painting + line drawing "
                                    "fusion (a sheet), warping error against the bank, and each fit's wall time. "
                                    "Writes acceptance.md, acceptance.json, vectors.npz and the two JPEG sheets.")
    _add_dataclass_args(sa, AcceptanceConfig)

    args = parser.parse_args(argv)
    if args.command == "perceptual":
        from train.perceptual import train_perceptual

        fields = {f.name for f in dataclasses.fields(PerceptualConfig)}
        path = train_perceptual(PerceptualConfig(**{k: v for k, v in vars(args).items() if k in fields}))
        print(f"model written to {path}")
    elif args.command == "frontier":
        from engines.loader import load_backend
        from train.frontier import frontier, frontier_md

        rows = frontier(args.models, args.scales)
        print("\n".join(frontier_md(rows, load_backend(args.models[0]).name)))
    elif args.command == "sheet":
        from train.sheet import contact_sheet

        contact_sheet(args.model, args.out, height=args.height)
        print(f"contact sheet written to {args.out}")
    elif args.command == "teacher":
        from train.teacher import TeacherConfig, train_teacher

        try:
            cfg = TeacherConfig.from_preset(args.preset, args.overrides)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        cfg.styles = [*cfg.styles, *args.extra_styles]
        cfg.fuse = [*cfg.fuse, *(",".join(refs) for refs in args.fuse)]
        if args.init:
            cfg.init = args.init
        if cfg.init and not os.path.isfile(cfg.init):
            parser.error(f"--init: {cfg.init} is not a checkpoint file")
        path = train_teacher(cfg, resume=args.resume)
        print(f"teacher checkpoint written to {path} (inference copy: {path.parent / 'teacher.pt'})")
    elif args.command == "distill":
        import torch

        from train.distill import DistillConfig, train_distill

        try:
            cfg = DistillConfig.from_preset(args.preset, args.overrides)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        critic = args.critic
        teacher = Path(args.teacher)
        if critic is None and teacher.is_dir() and (teacher.parent / "critic.pt").is_file():
            critic = str(teacher.parent / "critic.pt")  # `perceptual` writes it beside OUT/model
        elif critic is None and teacher.is_file() and "discriminator" in torch.load(teacher, map_location="cpu",
                                                                                       weights_only=True):
            critic = args.teacher
        path = train_distill(cfg, args.teacher, critic)
        print(f"student written to {path}")
    elif args.command == "eval":
        from train.evaluate import evaluate

        if args.speed and args.teacher is None:
            parser.error("--speed compares students with the teacher: pass --teacher CKPT too")
        if args.speed_frames < 1:
            parser.error("--speed-frames must be at least 1")
        try:
            table = evaluate(args.checkpoints, args.out, size=args.size, clip=args.clip, frames=args.frames,
                             height=args.height, teacher=args.teacher, speed=args.speed,
                             speed_frames_count=args.speed_frames, speed_threads=args.speed_threads)
        except ValueError as exc:  # a student without a teacher style, a checkpoint that is neither kind
            parser.error(str(exc))
        print(table)
        print(f"metrics and contact sheets written to {args.out}")
    elif args.command == "style-acceptance":
        from train.style_acceptance import run_acceptance

        fields = {f.name for f in dataclasses.fields(AcceptanceConfig)}
        run_acceptance(AcceptanceConfig(**{k: v for k, v in vars(args).items() if k in fields}),
                       log=lambda m: print(m, flush=True))
    elif args.command == "clip-pairs":

        from engines.temporal import CLIP_PAIRS
        from train.clip_pairs import build_clip_pairs

        print(build_clip_pairs(out=Path(args.out) if args.out else CLIP_PAIRS))
    elif args.command == "fidelity-fixture":
        from train.fidelity_fixture import make_fixture, summary

        path = make_fixture(args.teacher, args.out, args.student)
        print(summary(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
