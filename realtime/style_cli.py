"""`realtime style add|list|rm`, and the one-run fit behind `realtime stylize --style-image`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from engines.style_library import StyleError, StyleLibrary, check_name, check_weights, read_picture


def add_parser(sub: argparse._SubParsersAction, model_args,  # type: ignore[type-arg]
               common: argparse.ArgumentParser) -> None:
    style = sub.add_parser("style", parents=[common], help="your own styles: fit one from 1-3 pictures, list, delete",
                           description="Manage your style library (the folder `realtime serve --styles` serves). "
                                       "A new style is fitted from 1 to 3 pictures in under a minute on a CPU "
                                       "and works with every back-end. Needs: pip install 'stylizer[styles]'.")
    ssub = style.add_subparsers(dest="style_command", required=True, metavar="ACTION")
    add = ssub.add_parser("add", parents=[common], help="fit a new style from 1-3 pictures and store it",
                          description="Fuse the pictures' statistics into one style and fit it for the model.")
    add.add_argument("name", help="1-32 lowercase letters, digits, '-' or '_'")
    add.add_argument("images", nargs="+", metavar="IMG", help="1 to 3 pictures (JPEG, PNG, WebP, ...; 10 MB each)")
    add.add_argument("--weights", nargs="+", type=float, metavar="W",
                     help="one weight per picture (default: equal), e.g. --weights 2 1")
    model_args(add)
    ls = ssub.add_parser("list", parents=[common], help="list the library's styles")
    rm = ssub.add_parser("rm", parents=[common], help="delete a style")
    rm.add_argument("name")
    for p in (add, ls, rm):
        p.add_argument("--styles", metavar="DIR", default=None,
                       help="the library folder (default: $XDG_DATA_HOME/stylizer/styles)")


def read_pictures(paths: list[str]) -> list[np.ndarray]:
    out = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            raise StyleError(f"{p}: {exc.strerror or exc}") from None
        out.append(read_picture(data, p))
    return out


def _progress(frac: float, message: str) -> None:
    bar = "#" * int(frac * 30)
    print(f"\rfitting [{bar:<30}] {frac * 100:3.0f}%  {message[:40]:<40}", end="", file=sys.stderr, flush=True)


def fit_for_run(backend, paths: list[str], weights: list[float] | None) -> str:
    """Fit a style for this run only and add it to `backend`'s bank; returns its name."""
    from engines.style_fit import FitConfig, fit_style

    pictures = read_pictures(paths)
    w = check_weights(weights, len(pictures))
    res = fit_style(backend.artifact, pictures, w, cfg=replace(FitConfig(), threads=_threads()), progress=_progress)
    print(f"\nrealtime: style fitted in {res.seconds:.0f} s", file=sys.stderr)
    backend.set_styles({"your-style": res.vector})
    return "your-style"


def _threads() -> int:
    from engines.backends import default_threads

    return default_threads()


def run_style(args: argparse.Namespace) -> int:
    try:
        lib = StyleLibrary(args.styles)
    except OSError as exc:
        print(f"realtime: error: --styles {args.styles}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        if args.style_command == "list":
            from engines.artifact import load_artifact

            sha = load_artifact(None).weights_sha256
            for s in lib.styles():
                refs = ", ".join(f"{r.get('source') or r['file']} x{r['weight']:g}" for r in s.manifest["references"])
                state = "" if s.vector(sha) is not None else "  (fitted for another model: refitted when served)"
                print(f"{s.name}\t{refs}{state}")
            if not lib.styles():
                print(f"no styles in {lib.root}; add one with: realtime style add NAME IMG [IMG ...]", file=sys.stderr)
            return 0
        if args.style_command == "rm":
            lib.remove(args.name)
            print(f"realtime: deleted {args.name}", file=sys.stderr)
            return 0
        from engines.loader import load_backend
        from engines.style_fit import FitConfig, check_fit_available, fit_style

        check_fit_available()
        backend = load_backend(args.engine, args.backend, args.threads)
        trained = backend.style_names
        check_name(args.name, (*trained, *lib.names()))
        pictures = read_pictures(args.images)
        weights = check_weights(args.weights, len(pictures))
        res = fit_style(backend.artifact, pictures, weights, cfg=replace(FitConfig(), threads=_threads()),
                        progress=_progress)
        print(file=sys.stderr)
        lib.create(args.name, pictures, weights, [Path(p).name for p in args.images], res.weights_sha256,
                   res.vector, res.summary(), trained)
        print(f"realtime: added {args.name} ({res.seconds:.0f} s, {res.steps} steps, from {res.start}) "
              f"to {lib.root}", file=sys.stderr)
        return 0
    except Exception as exc:
        from engines.style_fit import FitDiverged, FitTimeout, FitUnavailable

        if isinstance(exc, (StyleError, FitUnavailable, FitDiverged, FitTimeout)):
            print(f"realtime: error: {exc}", file=sys.stderr)
            return 2
        raise
