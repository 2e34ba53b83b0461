"""python -m train: training and evaluation commands."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing


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

    p = sub.add_parser("perceptual", help="train the student directly with perceptual losses (foundation recipe)",
                       description="Feed-forward perceptual training of the live student over a bank of styles. "
                                   "Styles are NAME=PATH, a path, or a file-name prefix in shared/data/styles.")
    _add_dataclass_args(p, PerceptualConfig)

    s = sub.add_parser("sheet", help="contact sheet: held-out photos x styles (plus a blend)")
    s.add_argument("model", nargs="?", default=None, help="model folder (default: the bundled model)")
    s.add_argument("--out", default="contact_sheet.png")
    s.add_argument("--height", type=int, default=240)

    args = parser.parse_args(argv)
    if args.command == "perceptual":
        from train.perceptual import train_perceptual

        fields = {f.name for f in dataclasses.fields(PerceptualConfig)}
        path = train_perceptual(PerceptualConfig(**{k: v for k, v in vars(args).items() if k in fields}))
        print(f"model written to {path}")
    elif args.command == "sheet":
        from train.sheet import contact_sheet

        contact_sheet(args.model, args.out, height=args.height)
        print(f"contact sheet written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
