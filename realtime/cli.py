"""The `realtime` command: serve, stylize, style, bench."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from engines.backends import CHOICES

BACKEND_HELP = ("inference back-end: " + ", ".join(CHOICES) + ". auto = what an engine folder was built for; "
                "for a model folder torch-cuda on a CUDA GPU, else OpenVINO on the CPU (int8 where the folder ships "
                "a current int8 file that measured faster), else ONNX Runtime, else PyTorch (default: auto)")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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

    st = sub.add_parser("stylize", help="stylize an image, a video file or a live stream",
                        description="Stylize an image (png/jpg/...) or a video file. Video keeps its frame count, "
                                    "frame rate and audio. INPUT may also be a stream URL (rtsp://, rtmp://, srt://, "
                                    "udp://, http://) and OUTPUT a stream URL (rtmp://, srt://, udp://): then the "
                                    "newest frame is stylized (stale ones are dropped), audio is copied unchanged, "
                                    "a status line shows fps, lag and drops, and a dropped input is reopened with "
                                    "back-off. Stop with Ctrl-C or SIGTERM: a file output is finished properly "
                                    "(exit 0). Out of disk space: a one-line error, and the partial file is "
                                    "removed.")
    _add_model_args(st)
    st.add_argument("input", help="input image, video file or stream URL")
    st.add_argument("output", help="output file (its extension picks the format) or stream URL")
    group = st.add_mutually_exclusive_group()
    group.add_argument("--style", help="one style from the model's bank")
    group.add_argument("--weights", nargs="+", metavar="NAME=W", help="a blend, e.g. --weights vangogh=0.6 hokusai=0.4")
    group.add_argument("--style-image", nargs="+", metavar="IMG",
                       help="fit a style from 1-3 pictures for this run only (under a minute; needs "
                            "pip install 'stylizer[styles]'); `realtime style add` keeps one")
    st.add_argument("--strength", type=float, default=1.0, help="0 = input, 1 = fully stylized (default: 1)")
    st.add_argument("--caption", default="", help="caption drawn on every frame")
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

    bench = sub.add_parser("bench", help="measure fps and latency, print a table, append it to BENCHMARKS.md",
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

    add_style_parser(sub, _add_model_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engines.backends import BackendError

    if getattr(args, "offer_rate", None) is not None:
        args.offer_burst = max(1.0, 5 * args.offer_rate)
    try:
        if args.command == "serve":
            from realtime.server import run_server

            return run_server(args)
        if args.command == "stylize":
            from realtime.stop import install_stop_signals
            from realtime.stylize_file import run_stylize

            with install_stop_signals():
                return run_stylize(args)
        if args.command == "style":
            from realtime.style_cli import run_style

            return run_style(args)
        if args.command == "bench":
            from realtime.bench import run_bench

            return run_bench(args)
    except BackendError as exc:
        print(f"realtime: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
