"""Static int8 quantization (QDQ, per-channel) of the student's ONNX, calibrated on real frames.

Measured here: fully quantized static QDQ ran 1.3-2.5x faster than FP32 in ONNX Runtime on
the CPU; dynamic quantization was 10x slower, so it is not offered.

Op types: Conv, Relu and Concat only. Quantizing Add and Resize too was faster but fell to
30 dB; the FiLM arithmetic stays FP32 because it sets the colours. The 1/2-resolution
tail (to_half, half_dw, half_pw, head) stays FP32 for speed: its Q/DQ passes at 1/2
resolution cost more than its int8 convolutions save (on the earlier model keeping it
also lifted the worst frame from 32.7 to 34.3 dB).

Which of the other convolutions are quantized is measured for each set of weights, not
fixed (`_plan`): every conv is quantized alone and scored against the FP32 graph on
the calibration frames (worst PSNR over frames x styles and blends), then the largest
set of the least sensitive convs that still scores `SELECTION_MARGIN_DB` above the int8
floor is kept; the rest stay FP32. A model whose fully quantized graph already clears
that bar skips the per-conv pass. The parity gate against PyTorch (`python -m engines
quantize`, `python -m engines build`) still decides whether the file is kept.

Why this exists: the first bundled model (the foundation's perceptual student) painted
kandinsky/klimt daubs on flat walls, seeded by tiny differences. With every conv quantized
it fell to 24.9 dB (frame 1, kandinsky), and single early convs alone cost 30-34 dB: input noise of half a level
(+-0.5/255) already moves that frame to 39.9 dB in FP32. The pass keeps encode, down,
blocks 0-1, block 2's expand/depthwise, block 3's expand and merge_dw FP32 there (10 of 22
convs int8, 36.0 dB at the gate, 34.7 dB on 20 held-out video frames). That partly int8 graph
ran 1.05-1.10x faster than fp32 in OpenVINO but slower in ONNX Runtime, which is what the
speed check in `python -m engines quantize` (INT8_MIN_SPEEDUP, STAMP_INT8_RUNTIME) is for.
The distilled defaults that replaced it have no daubs: all 26 convs go int8 (figures in the model's README).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.contract import INPUT_FILM, INPUT_IMAGE, INPUT_STRENGTH, padded_size
from engines.parity import THRESHOLD_DB, parity_frames, psnr
from engines.style_bank import StyleBank

if TYPE_CHECKING:
    from engines.artifact import Artifact

def _style_mixes(bank: StyleBank) -> list[np.ndarray]:
    """The FiLM vector (1, F) of every trained style and of their even blend, at full strength."""
    s, one = bank.num_trained, np.ones((1, 1), np.float32)
    blends = [np.eye(s, dtype=np.float32)[i] for i in range(s)] + [np.full(s, 1.0 / s, np.float32)]
    return [bank.mix(w[None], one) for w in blends]


def _feed(rgb: np.ndarray, film: np.ndarray) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    hp, wp = padded_size(h, w)
    x = np.zeros((1, 3, hp, wp), np.float32)
    x[0, :, :h, :w] = rgb.transpose(2, 0, 1) / 255.0
    return {INPUT_IMAGE: x, INPUT_FILM: film, INPUT_STRENGTH: np.ones((1, 1), np.float32)}


class _Reader:
    """Feeds (frame x style mix x strength) combinations, so every style's FiLM range is seen."""

    def __init__(self, frames: Iterable[np.ndarray], bank: StyleBank) -> None:
        self._items = self._make(list(frames), bank)

    @staticmethod
    def _make(frames: list[np.ndarray], bank: StyleBank) -> Iterator[dict[str, np.ndarray]]:
        mixes = _style_mixes(bank)
        for i, rgb in enumerate(frames):
            for j, mix in enumerate(mixes):
                if (i + j) % 2:  # half the combinations keep calibration quick
                    continue
                yield _feed(rgb, mix)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def rewind(self) -> None:  # pragma: no cover - part of the reader protocol, unused by the calibrators
        raise NotImplementedError


QUANTIZED_OPS = ["Conv", "Relu", "Concat"]
FP32_MODULES = ("/to_half/", "/half_dw/", "/half_pw/", "/head/")  # ONNX node-name prefixes kept FP32 (speed)
# The selection keeps this much above the int8 floor on its own frames, because other frames score
# lower: on the bundled model, 11 convs at 35.1 dB here gave 32.0 dB on 20 held-out webcam/indoor
# video frames (the floor), 10 convs at 36.1 dB gave 34.7 dB there.
SELECTION_MARGIN_DB = 3.5
CALIB_PERCENTILE = 99.99
# `python -m engines quantize` keeps the int8 file only where it runs at least this much faster than
# fp32 (one thread, 640x360, interleaved), and stamps the runtime it was measured on: "auto" runs
# int8 there and fp32 elsewhere (partly quantized graphs were slower than fp32 in ONNX Runtime).
INT8_MIN_SPEEDUP = 1.03


@dataclass
class Int8Plan:
    """Which convolutions the int8 file quantizes, and the measurements that chose them."""

    quantized: list[str]  # Conv node names
    kept_fp32: list[str]  # Conv node names kept FP32 by the measurement (FP32_MODULES not included)
    min_db: float  # worst PSNR of the chosen graph vs FP32 on the selection frames
    full_db: float  # the same with every candidate conv quantized
    sensitivity: dict[str, float] = field(default_factory=dict)  # worst PSNR, that conv alone quantized

    def summary(self) -> str:
        n = len(self.quantized) + len(self.kept_fp32)
        if not self.kept_fp32:
            return f"all {n} candidate convs int8 ({self.min_db:.1f} dB vs FP32 on the selection frames)"
        return (f"{len(self.quantized)} of {n} candidate convs int8 ({self.min_db:.1f} dB vs FP32 on the selection "
                f"frames; all {n}: {self.full_db:.1f} dB); kept FP32 by sensitivity: "
                + ", ".join(c.strip("/").removesuffix("/Conv") for c in self.kept_fp32))


class _Quantizer:
    """Pre-processed model, one calibration (cached), and scoring against the FP32 graph."""

    def __init__(self, onnx_in: Path, bank: StyleBank, frames: list[np.ndarray], tmp: Path) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.bank, self.frames, self.tmp = bank, frames, tmp
        self.pre = tmp / "pre.onnx"
        quant_pre_process(str(onnx_in), str(self.pre), skip_symbolic_shape=True)
        self.nodes = list(onnx.load(str(self.pre)).graph.node)
        self.convs = [n.name for n in self.nodes if n.op_type == "Conv" and not n.name.startswith(FP32_MODULES)]
        self.cache = tmp / "calibration.json"
        self._feeds: list[dict[str, np.ndarray]] | None = None
        self._refs: list[np.ndarray] | None = None
        self.onnx_in = onnx_in

    def _extras(self, convs: list[str]) -> list[str]:
        """The Relu after a chosen conv and a Concat feeding only chosen convs run int8 with them."""
        chosen = set(convs)
        producer = {o: n for n in self.nodes for o in n.output}
        consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        out = []
        for n in self.nodes:
            if n.name.startswith(FP32_MODULES):
                continue
            if n.op_type == "Relu" and n.input and getattr(producer.get(n.input[0]), "name", None) in chosen:
                out.append(n.name)
            elif n.op_type == "Concat":
                users = consumers.get(n.output[0], [])
                if users and all(u.name in chosen for u in users):
                    out.append(n.name)
        return out

    def write(self, out: Path, convs: list[str]) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints histogram chatter
            quantize_static(
                str(self.pre), str(out), _Reader(self.frames, self.bank),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                op_types_to_quantize=QUANTIZED_OPS,
                nodes_to_quantize=[*convs, *self._extras(convs)],
                extra_options={"CalibPercentile": CALIB_PERCENTILE},
                calibration_cache_path=self.cache,  # one calibration pass, reused for every trial
            )
        return out

    def _session(self, path: Path) -> Any:  # an onnxruntime.InferenceSession
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    @staticmethod
    def _u8(y: np.ndarray) -> np.ndarray:
        return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def score(self, path: Path) -> float:
        """Worst PSNR (8-bit output) of the model at `path` against the FP32 graph over the selection feeds."""

        if self._feeds is None:
            # Selection feeds: every calibration frame x every pure style and the even blend, plus a
            # noise frame (its own seed: the parity gate's noise frame is not reused here).
            noise = np.random.default_rng(1).integers(0, 256, self.frames[0].shape, dtype=np.uint8)
            self._feeds = [_feed(f, m) for f in [*self.frames, noise] for m in _style_mixes(self.bank)]
            ref = self._session(self.onnx_in)
            self._refs = [self._u8(ref.run(None, fd)[0]) for fd in self._feeds]
        assert self._refs is not None
        sess = self._session(path)
        return min(psnr(self._u8(sess.run(None, fd)[0]), r) for fd, r in zip(self._feeds, self._refs))


def _log(msg: str) -> None:
    print(f"engines: int8: {msg}", file=sys.stderr, flush=True)


def _plan(q: _Quantizer, target_db: float) -> Int8Plan:
    trial = q.tmp / "trial.onnx"
    full = q.score(q.write(trial, q.convs))
    if full >= target_db:
        return Int8Plan(list(q.convs), [], full, full)
    _log(f"all {len(q.convs)} convs int8: {full:.1f} dB vs FP32 (bar {target_db:.1f}); measuring each conv alone")
    sens = {c: q.score(q.write(trial, [c])) for c in q.convs}
    order = sorted(q.convs, key=lambda c: -sens[c])  # least sensitive first
    # The largest prefix of that order that clears the bar (binary search: more int8 convs, more error).
    lo, hi, ok_k, best = 1, len(order) - 1, 0, float("nan")
    while lo <= hi:
        k = (lo + hi) // 2
        db = q.score(q.write(trial, order[:k]))
        if db >= target_db:
            ok_k, best, lo = k, db, k + 1
        else:
            hi = k - 1
    chosen = set(order[:ok_k])
    return Int8Plan([c for c in q.convs if c in chosen], [c for c in q.convs if c not in chosen], best, full, sens)


def quantize_int8(onnx_in: Path, onnx_out: Path, bank: StyleBank, frames: Iterable[np.ndarray],
                  weights_sha256: str | None = None, *, select: bool = True,
                  margin_db: float = SELECTION_MARGIN_DB) -> Int8Plan:
    """Write a QDQ int8 model (per-channel weights, uint8 activations) of `onnx_in` to `onnx_out`.

    With `select` (default) the convolutions that are quantized are chosen by measurement (see the
    module docstring); `select=False` quantizes every candidate conv. Returns the plan that was written.
    """
    from engines.onnx_export import STAMP_PRECISION, STAMP_WEIGHTS, stamp

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    frames = list(frames)
    with tempfile.TemporaryDirectory() as tmp:
        q = _Quantizer(onnx_in, bank, frames, Path(tmp))
        if select:
            plan = _plan(q, THRESHOLD_DB["int8"] + margin_db)
        else:
            plan = Int8Plan(list(q.convs), [], float("nan"), float("nan"))
        if not plan.quantized:
            raise ValueError(f"no conv can be int8 within {margin_db} dB above the int8 floor "
                             f"(all int8: {plan.full_db:.1f} dB vs FP32)")
        out_tmp = q.write(Path(tmp) / "int8.onnx", plan.quantized)
        props = {STAMP_PRECISION: "int8", "stylizer.int8_fp32_convs": ",".join(plan.kept_fp32)}
        if weights_sha256:
            props[STAMP_WEIGHTS] = weights_sha256
        stamp(out_tmp, **props)
        onnx_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out_tmp), str(onnx_out))
    return plan


def int8_speedup(art: Artifact, runtime: str, rounds: int = 16, chunk: int = 4) -> float:
    """fp32 time / int8 time of the model folder's two ONNX files on `runtime`, one thread, 640x360.

    Short runs alternate between the two (load hits both alike) and count process CPU time, which a
    busy machine inflates less than wall time; the medians are compared."""
    import time

    from engines.loader import load_backend

    frames = parity_frames()[:4]
    pair = [load_backend(art.path, f"{runtime}-fp32", 1), load_backend(art.path, f"{runtime}-int8", 1)]
    vec = art.contract.weights_vector(None)
    for b in pair:
        for f in frames:
            b.stylize(f, vec)
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.process_time()
            for i in range(chunk):
                pair[k].stylize(frames[(r + i) % len(frames)], vec)
            times[k].append(time.process_time() - t0)
    for b in pair:
        b.close()
    return float(np.median(times[0]) / np.median(times[1]))
