"""The `realtime` command: serve, stylize, style, bench."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, NoReturn

from engines.backends import CHOICES

if TYPE_CHECKING:
    from realtime.live.limits import Limits

LOG_LEVELS = ("debug", "info", "warning", "error")
# What each command logs without -q/-v/--log-level: the server's log is its record of peers and streams;
# a file job's output is its progress and summary lines, so only warnings are logged there.
DEFAULT_LOG_LEVEL = {"serve": "info", "stylize": "warning", "bench": "warning"}

BACKEND_HELP = ("inference back-end: " + ", ".join(CHOICES) + ". auto = what an engine folder was built for; "
                "for a model folder torch-cuda on a CUDA GPU (with torch installed), else OpenVINO on the CPU "
                "(int8 where the folder ships a current int8 file that measured faster), else ONNX Runtime, else PyTorch (default: auto)")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", metavar="PATH", default=None,
                   help="model folder (model.json) or engine folder from `python -m engines build` (engine.json); "
                        "default: the bundled model")
    p.add_argument("--backend", metavar="NAME", default="auto", help=BACKEND_HELP)
    p.add_argument("--threads", type=int, default=None,
                   help="inference threads (default: all cores but a quarter, and at least one, left for video coding)")


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("stylizer")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _common() -> argparse.ArgumentParser:
    """-q / -v / --log-level, which every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                   help="log lines at this level and above (default: info for serve, warning otherwise)")
    x.add_argument("-v", "--verbose", action="store_true", help="debug logging (same as --log-level debug)")
    x.add_argument("-q", "--quiet", action="store_true",
                   help="warnings and errors only: no progress, no summary line (serve still prints its address)")
    return common


def _default_style() -> str:
    """The bundled model's first style, for --help (read from its model.json; no network is loaded)."""
    try:
        from engines.artifact import load_artifact

        return load_artifact(None).contract.style_names[0]
    except Exception:  # noqa: BLE001  (a damaged install still gets its --help)
        return "the model's first"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="realtime",
        description="Live video stylizer: turn a webcam, a file or a stream into moving artwork, with captions.",
    )
    from realtime.expression.overlay import KINDS as CAPTION_KINDS
    from realtime.stylize.media import FORMAT_NAMES as FORMAT_CHOICES

    parser.add_argument("--version", action="version", version=f"%(prog)s (stylizer) {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    serve = sub.add_parser("serve", parents=[common], help="run the WebRTC server and web app",
                           description="Serve the web app: open http://HOST:PORT, allow the camera, and see "
                                       "yourself stylized live. Styles, blends and captions are set from the page.")
    _add_model_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--styles", metavar="DIR", default=None,
                       help="your style library: styles added from the page, the API or `realtime style add` "
                            "(default: $XDG_DATA_HOME/stylizer/styles, i.e. ~/.local/share/stylizer/styles)")
    serve.add_argument("--fit-steps", type=int, default=None, metavar="N",
                       help="optimiser steps of a style fit (default 100, or 45 s, whichever ends first; "
                            "fewer is faster and rougher)")
    serve.add_argument("--moods", metavar="FILE.toml", default=None,
                       help="extra mood presets ([[mood]] tables; see docs/moods.md)")
    serve.add_argument("--token", default=None,
                       help="bearer token that every control and signaling route requires: /offer, WHIP, WHEP, "
                            "/api/streams, /metrics (default: env STYLIZER_TOKEN; without one, only clients on "
                            "this machine may use them). The web app takes it as /?token=TOKEN")
    serve.add_argument("--ice-server", action="append", default=[], metavar="URL",
                       help="STUN/TURN server for clients behind NAT, e.g. stun:stun.example.org:3478 "
                            "(repeatable; default: none, enough on one machine or a LAN)")
    serve.add_argument("--loopback-ice", action="store_true",
                       help="offer only 127.0.0.1 ICE candidates (same-machine tests with headless browsers)")
    sec = serve.add_argument_group("security")
    sec.add_argument("--insecure", action="store_true",
                     help="allow a non-loopback --host without a token: anyone who reaches the port may use it")
    sec.add_argument("--cert", metavar="PEM", default=None,
                     help="TLS certificate (with --key): serve https, which browsers need for the camera "
                          "off localhost")
    sec.add_argument("--key", metavar="PEM", default=None, help="TLS private key (with --cert)")
    sec.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                     help="another origin (e.g. https://studio.example.org) whose pages may call the API and "
                          "signaling routes; repeatable (default: only the server's own origin)")
    lim = serve.add_argument_group("limits")
    lim.add_argument("--max-peers", type=int, default=None, metavar="N",
                     help="WebRTC peers at once (web sessions + WHIP publishers + WHEP viewers); past it, "
                          "503 'server busy' (default: 8)")
    lim.add_argument("--max-peers-per-client", dest="max_peers_per_client", type=int, default=None, metavar="N",
                     help="of those, how many one client address may hold; past it, 429 (default: 6)")
    lim.add_argument("--budget-ms", type=float, default=None, metavar="MS",
                     help="per-frame budget in the server, decoded to stylized; misses are counted "
                          "(default: 150)")
    lim.add_argument("--max-resolution", default=None, metavar="WxH",
                     help="bigger frames are stylized scaled down to this area (default: 1280x720)")
    lim.add_argument("--offer-rate", type=float, default=None, metavar="N",
                     help="offers per second per client address, bursts of 5x (default: 2)")
    lim.add_argument("--idle-timeout", dest="idle_timeout_s", type=float, default=None, metavar="S",
                     help="close a session or publisher that sent no video for S seconds (default: 15)")
    lim.add_argument("--connect-timeout", dest="connect_timeout_s", type=float, default=None, metavar="S",
                     help="close an answered peer that has not connected S seconds after the answer, and free its "
                          "slot (default: 10)")
    lim.add_argument("--body-timeout", dest="body_timeout_s", type=float, default=None, metavar="S",
                     help="a request body (offer, SDP, API message) not received in full within S seconds is "
                          "answered 408; no peer slot is taken before the body is in (default: 10)")
    lim.add_argument("--header-timeout", dest="header_timeout_s", type=float, default=None, metavar="S",
                     help="close a connection that has not sent complete request headers S seconds after it "
                          "opened or after its last response (slow or idle clients; default: 10)")
    lim.add_argument("--worker-timeout", dest="worker_timeout_s", type=float, default=None, metavar="S",
                     help="an inference call running longer counts as hung: the worker is replaced (default: 30)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="log lines as text or one JSON object each (with session/stream ids)")

    st = sub.add_parser("stylize", parents=[common], help="stylize an image, a video file or a live stream",
                        description="Stylize an image (png/jpg/...) or a video file; which one INPUT is comes from "
                                    "its content, not its name. Video keeps its frame count, frame rate and audio. "
                                    "INPUT may also be a stream URL (rtsp://, rtmp://, srt://, udp://, http://) and "
                                    "OUTPUT a stream URL (rtmp://, srt://, udp://): then the newest frame is "
                                    "stylized (stale ones are dropped), audio is copied unchanged, a status line "
                                    "shows fps, lag and drops, and a dropped input is reopened with back-off. "
                                    "Stop with Ctrl-C or SIGTERM: a file output is finished properly (exit 0). "
                                    "Out of disk space: a one-line error, and the partial file is removed. "
                                    "Progress is a bar on a terminal and a line every 5 s otherwise.",
                        epilog="examples: realtime stylize photo.jpg out.png --style hokusai --caption 'hello'; "
                               "realtime stylize clip.mp4 out.mp4 --mood 'party time'; "
                               "curl -s URL | realtime stylize - - --format jpg > out.jpg")
    _add_model_args(st)
    st.add_argument("input", nargs="?", help="input image, video file or stream URL; - reads stdin")
    st.add_argument("output", nargs="?",
                    help="output file (its extension, or --format, picks the type) or stream URL; - writes stdout "
                         "(an image or video once complete; with a stream INPUT, live MPEG-TS)")
    st.add_argument("--list-styles", action="store_true", help="print the model's styles, one a line, and exit")
    st.add_argument("--format", choices=FORMAT_CHOICES, type=str.lower, default=None,
                    help="output type when OUTPUT is - or has another extension (default for -: png for an "
                         "image, mkv for a video)")
    st.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists (default: refuse)")
    look = st.add_argument_group("the look")
    group = look.add_mutually_exclusive_group()
    group.add_argument("--style", help=f"one style from the model's bank (default: {_default_style()}, the first; "
                                       "see --list-styles)")
    group.add_argument("--weights", nargs="+", metavar="NAME=W", help="a blend, e.g. --weights vangogh=0.6 hokusai=0.4")
    group.add_argument("--style-image", nargs="+", metavar="IMG",
                       help="fit a style from 1-3 pictures for this run only (under a minute; needs "
                            "pip install 'stylizer[styles]'); `realtime style add` keeps one")
    look.add_argument("--strength", type=float, default=None,
                      help="0 = input, 1 = fully stylized (default: 1, or the mood's)")
    look.add_argument("--mood", metavar="PHRASE", default=None,
                      help="a mood preset, e.g. 'party time': its blend, strength, caption style and emoji; the "
                           "options above and below override parts of it (presets: docs/moods.md)")
    look.add_argument("--moods", metavar="FILE.toml", default=None, help="extra mood presets ([[mood]] tables)")
    look.add_argument("--caption", default="", help="caption drawn on every frame")
    look.add_argument("--caption-kind", choices=CAPTION_KINDS, default=None,
                      help="how the caption is drawn (default: meme-bottom, or the mood's); speech and thought "
                           "bubbles point at the first face found")
    look.add_argument("--caption-color", metavar="COLOR", default=None,
                      help="caption colour, #rrggbb or a CSS name (default: white, or the mood's)")
    look.add_argument("--emoji", nargs="*", metavar="NAME", default=None,
                      help="emoji stickers: short names (party, fire, heart, ...), code points (1F525) or emoji "
                           "themselves; at most 8 (default: none, or the mood's; --emoji alone clears a mood's)")
    live = st.add_argument_group("streams (when INPUT or OUTPUT is a URL)")
    live.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    live.add_argument("--reconnect", type=int, default=-1, metavar="N",
                      help="reopen a network input that drops at most N times in a row (default: -1, for ever)")
    live.add_argument("--timeout", type=float, default=5.0, metavar="S",
                      help="a network input with no data for S seconds counts as dropped (default: 5)")
    live.add_argument("--input-option", action="append", metavar="KEY=VALUE",
                      help="FFmpeg option for the input, e.g. listen=1 to receive rtmp:// (repeatable)")
    live.add_argument("--output-option", action="append", metavar="KEY=VALUE",
                      help="FFmpeg option for the output muxer/protocol (repeatable)")

    bench = sub.add_parser("bench", parents=[common],
                           help="measure fps and latency and print a table (--record appends it to a file)",
                           description="Network-only rows for every back-end, size and batch size, each with its "
                                       "speed ratio to PyTorch eager FP32 (measured interleaved, in the same run), "
                                       "and full-pipeline rows (decode, convert, network, overlay, convert, VP8 "
                                       "encode) for the first back-end.")
    bench.add_argument("--engine", metavar="PATH", action="append", default=None,
                       help="model or engine folder; repeat to compare several (default: the bundled model)")
    bench.add_argument("--backend", metavar="NAME", default="auto", help=BACKEND_HELP)
    bench.add_argument("--compare", metavar="NAME,...", default="",
                       help="more back-ends to time on each engine, e.g. onnx,onnx-int8,openvino-fp32")
    bench.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    bench.add_argument("--sizes", default="640x360,1280x720,1920x1080", metavar="WxH,...",
                       help="frame sizes (default: 640x360,1280x720,1920x1080)")
    bench.add_argument("--batch", default="1,8", metavar="N,...", help="network-only batch sizes (default: 1,8)")
    bench.add_argument("--pipeline-sizes", default="640x360,1280x720", metavar="WxH,...",
                       help="sizes of the full-pipeline rows; 'none' skips them (default: 640x360,1280x720)")
    bench.add_argument("--frames", type=int, default=150, help="timed frames per row (default: 150)")
    bench.add_argument("--record", metavar="FILE", default=None,
                       help="append the table to this markdown file (e.g. BENCHMARKS.md)")
    from realtime.style_cli import add_parser as add_style_parser

    add_style_parser(sub, _add_model_args, common)
    return parser


def log_level(args: argparse.Namespace) -> int:
    name = args.log_level or ("debug" if args.verbose else "warning" if args.quiet else
                              DEFAULT_LOG_LEVEL.get(args.command, "warning"))
    return getattr(logging, name.upper())


def _log_to_stderr(level: int) -> None:
    """Plain log lines on stderr for the file commands (serve sets up its own redacting handler)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "realtime_cli", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.realtime_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("realtime: %(levelname)s: %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def _list_styles(args: argparse.Namespace) -> int:
    from engines.artifact import ArtifactError, load_artifact

    try:
        names = load_artifact(args.engine).contract.style_names
    except ArtifactError as exc:
        print(f"realtime: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print("\n".join(names))
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """--max-resolution: "1280x720" -> (1280, 720)."""
    from realtime.live.security import SecurityError

    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 16 or int(h) < 16:
        raise SecurityError(f"--max-resolution must look like 1280x720, got {text!r}")
    return int(w), int(h)


def limits_from_args(args: argparse.Namespace) -> Limits:
    """`realtime serve`'s limit options on top of the defaults (SecurityError for a bad --max-resolution)."""
    from realtime.live.limits import Limits

    lim = Limits()
    for name in ("max_peers", "max_peers_per_client", "offer_rate", "offer_burst", "budget_ms", "connect_timeout_s",
                 "idle_timeout_s", "worker_timeout_s", "body_timeout_s", "header_timeout_s"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(lim, name, value)
    if getattr(args, "max_resolution", None):
        lim.max_width, lim.max_height = parse_size(args.max_resolution)
    return lim


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from engines.backends import BackendError

    args.level = log_level(args)
    if args.command != "serve":
        _log_to_stderr(args.level)
    if getattr(args, "offer_rate", None) is not None:
        args.offer_burst = max(1.0, 5 * args.offer_rate)
    try:
        if args.command == "serve":
            from realtime.live.security import SecurityError
            from realtime.live.server import run_server

            try:
                limits = limits_from_args(args)
            except SecurityError as exc:
                print(f"realtime: error: {exc}", file=sys.stderr)
                return 2
            return run_server(args, limits)
        if args.command == "stylize":
            if args.list_styles:
                return _list_styles(args)
            if args.input is None or args.output is None:
                print("realtime stylize: error: INPUT and OUTPUT are required (or --list-styles) (see --help)",
                      file=sys.stderr)
                return 2
            from realtime.live.stop import install_stop_signals
            from realtime.stylize.command import run_stylize

            with install_stop_signals():
                return run_stylize(args)
        if args.command == "style":
            from realtime.style_cli import run_style

            return run_style(args)
        if args.command == "bench":
            from realtime.benches.bench import run_bench

            return run_bench(args)
    except BackendError as exc:
        print(f"realtime: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
