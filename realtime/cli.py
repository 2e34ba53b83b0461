"""The `realtime` command: serve, stylize, bench."""

from __future__ import annotations

import argparse
import sys

from engines.backends import BACKENDS


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", metavar="PATH", default=None,
                   help="model folder (with model.json); default: the bundled model")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference back-end; auto = ONNX Runtime if installed, else PyTorch (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime",
        description="Live video stylizer: turn a webcam, a file or a stream into moving artwork, with captions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the WebRTC server and web app",
                           description="Serve the web app: open http://HOST:PORT, allow the camera, and see "
                                       "yourself stylized live. Styles, blends and captions are set from the page.")
    _add_model_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--loopback-ice", action="store_true",
                       help="offer only 127.0.0.1 ICE candidates (same-machine tests with headless browsers)")

    st = sub.add_parser("stylize", help="stylize an image or a video file",
                        description="Stylize an image (png/jpg/...) or a video file. Video keeps its frame count, "
                                    "frame rate and audio.")
    _add_model_args(st)
    st.add_argument("input", help="input image or video file")
    st.add_argument("output", help="output file (its extension picks the format)")
    group = st.add_mutually_exclusive_group()
    group.add_argument("--style", help="one style from the model's bank")
    group.add_argument("--weights", nargs="+", metavar="NAME=W", help="a blend, e.g. --weights vangogh=0.6 hokusai=0.4")
    st.add_argument("--strength", type=float, default=1.0, help="0 = input, 1 = fully stylized (default: 1)")
    st.add_argument("--caption", default="", help="caption drawn on every frame")

    bench = sub.add_parser("bench", help="measure fps and latency, print a table, append it to BENCHMARKS.md",
                           description="Network-only and full-pipeline (decode, convert, network, overlay, convert, "
                                       "VP8 encode) fps and latency at 640x360 and 1280x720.")
    _add_model_args(bench)
    bench.add_argument("--frames", type=int, default=150, help="timed frames per row (default: 150)")
    bench.add_argument("--record", metavar="FILE", default=None,
                       help="append the table to this markdown file (e.g. BENCHMARKS.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engines.backends import BackendError

    try:
        if args.command == "serve":
            from realtime.server import run_server

            return run_server(args)
        if args.command == "stylize":
            from realtime.stylize_file import run_stylize

            return run_stylize(args)
        if args.command == "bench":
            from realtime.bench import run_bench

            return run_bench(args)
    except BackendError as exc:
        print(f"realtime: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
