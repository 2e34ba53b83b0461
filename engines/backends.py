"""Back-ends that run the student behind one small interface, and their registry (engines/loader.py opens one).

A back-end takes RGB uint8 frames (H, W, 3), one or a batch, or yuv420p frames,
and returns stylized frames in the same layout and size. Padding to the
contract's size multiple, dtype, layout and colour conversion live behind the
interface, so callers never see the tensor contract. Each back-end lives in its
own module (engines/backend_*.py) and is imported only when chosen, so heavy
optional packages (onnxruntime, openvino, tensorrt) load lazily.

    torch         PyTorch eager, CPU, FP32: the reference every other back-end is checked against
    onnx          ONNX Runtime: fp32 or int8 (QDQ) on the CPU; fp32/fp16 on its CUDA provider where installed
    openvino      OpenVINO on the CPU: fp32, bf16 (CPUs with BF16 support), int8 (optional extra; "auto"
                  prefers it on the CPU where installed: the fastest CPU runtime measured here)
    torch-cuda    PyTorch on a CUDA GPU: fp16/fp32, channels_last, CUDA graphs, colour conversion on the GPU
    tensorrt      a TensorRT engine built by `python -m engines build` (optional extra)
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engines.artifact import Artifact, ArtifactError
from engines.contract import IOContract, padded_size
from engines.style_bank import StyleBank

PRECISIONS = ("fp32", "fp16", "bf16", "int8")

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]  # a yuv420p frame: Y (H, W), U and V (H/2, W/2), uint8


@dataclass(frozen=True)
class BackendInfo:
    """One registry entry: where the class lives and what it can run."""

    kind: str
    module: str
    cls: str
    precisions: tuple[str, ...]  # the first is the default
    device: str  # "cpu" or "cuda"


REGISTRY: dict[str, BackendInfo] = {
    b.kind: b
    for b in (
        BackendInfo("torch", "engines.backend_torch", "TorchBackend", ("fp32",), "cpu"),
        BackendInfo("onnx", "engines.backend_onnx", "OnnxBackend", ("fp32", "int8", "fp16"), "cpu"),
        BackendInfo("openvino", "engines.backend_openvino", "OpenVinoBackend", ("fp32", "bf16", "int8"), "cpu"),
        BackendInfo("torch-cuda", "engines.backend_torch_cuda", "TorchCudaBackend", ("fp16", "fp32"), "cuda"),
        BackendInfo("tensorrt", "engines.backend_tensorrt", "TensorRTBackend", ("fp16", "fp32"), "cuda"),
    )
}
# What --backend accepts: auto, a kind (its default precision, or the engine's), or KIND-PRECISION.
CHOICES = ("auto", *REGISTRY, *(f"{k}-{p}" for k, b in REGISTRY.items() for p in b.precisions))
BACKENDS = CHOICES  # the old name, kept for callers

# The CPU precision "auto" prefers when the model folder ships it (see README: chosen by measurement).
DEFAULT_CPU_PRECISION = "int8"
# The CPU runtimes "auto" tries, fastest first (BENCHMARKS.md, "CPU back-end choice"): OpenVINO with its
# resize rewrite ran the fused FP32 student 1.2-1.3x faster than ONNX Runtime at 640x360, interleaved.
CPU_RUNTIMES = ("openvino", "onnx")
# The package each CPU runtime needs (engines/loader.py checks it is installed).
RUNTIME_MODULE = {"openvino": "openvino", "onnx": "onnxruntime"}


class BackendError(Exception):
    """A back-end cannot be created or run (missing package, wrong name, bad artifact)."""


class OverlayPatch(Protocol):
    """A premultiplied RGBA patch placed at (x, y), like realtime.expression.overlay.Sprite."""

    x: int
    y: int
    rgb: np.ndarray  # (h, w, 3) float32, premultiplied, 0..255
    alpha: np.ndarray  # (h, w, 1) float32, 0..1


def default_threads() -> int:
    """All the cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def inference_threads() -> int:
    """Threads for the network when none are asked for: a quarter of the cores, and at least one, stay
    free for decoding and encoding, which run beside inference in the live service (a frame is encoded
    while the next is stylized). On 2 cores shared with a browser, one thread showed 28.2 fps against
    two threads' 26.5 (BENCHMARKS.md)."""
    n = default_threads()
    return max(1, n - max(1, n // 4))


def parse_choice(choice: str) -> tuple[str, str | None]:
    """'onnx-int8' -> ('onnx', 'int8'); 'torch-cuda' -> ('torch-cuda', None); 'auto' -> ('auto', None)."""
    if choice == "auto" or choice in REGISTRY:
        return choice, None
    kind, _, precision = choice.rpartition("-")
    if kind in REGISTRY and precision in REGISTRY[kind].precisions:
        return kind, precision
    raise BackendError(f"unknown back-end {choice!r}; choose one of: {', '.join(CHOICES)}")


def backend_name(kind: str, precision: str) -> str:
    """The name shown in tables and /healthz: the CPU FP32 ones keep their short names."""
    return kind if kind in ("torch", "onnx") and precision == "fp32" else f"{kind}-{precision}"


class Backend(ABC):
    """Runs one model artifact on one device. Not thread-safe: one caller at a time."""

    kind: str = "?"
    device: str = "cpu"
    # True where yuv420p frames go to the device as planes (DeviceBackend.yuv_rows / stylize_yuv_rows).
    frames_on_device: bool = False
    # The most frames one call takes (a TensorRT engine's profile); None: no limit of its own.
    max_batch: int | None = None

    def __init__(self, artifact: Artifact, precision: str = "fp32") -> None:
        self.artifact = artifact
        self.contract: IOContract = artifact.contract
        self.precision = precision
        self._in: np.ndarray | None = None  # (N, 3, Hp, Wp) float32, reused while the shape holds
        # _finish's float and planar uint8 scratch, reused while the shape holds: a live frame allocates no buffer.
        self._scaled: np.ndarray | None = None
        self._planes: np.ndarray | None = None
        # The last (N, weights, strength, bank) and their graph inputs: a live session sends the same every frame.
        self._vector_key: tuple[Any, ...] | None = None
        self._vector_value: tuple[np.ndarray, np.ndarray] | None = None
        try:
            # The FiLM rows the host mixes into the graph's `film` input: the trained styles, then fitted ones.
            self.styles: StyleBank = artifact.style_bank()
        except ArtifactError as exc:
            raise BackendError(str(exc)) from exc

    @property
    def name(self) -> str:
        return backend_name(self.kind, self.precision)

    @property
    def style_names(self) -> tuple[str, ...]:
        """The trained styles, then any fitted ones added with `set_styles`."""
        return self.styles.names

    @property
    def film_width(self) -> int:
        return self.styles.width

    def set_styles(self, extra: dict[str, np.ndarray]) -> None:
        """Replace the fitted styles (name -> FiLM vector for this model); one assignment, so a frame in
        flight sees the old bank or the new one, never half of each."""
        self.styles = self.styles.with_styles(extra)

    def weights_vector(self, weights: dict[str, float] | None, *, strict: bool = True) -> np.ndarray:
        """{style name: weight} over this back-end's styles (trained and fitted) -> the (R,) vector stylize takes."""
        return self.styles.weights_vector(weights, strict=strict)

    # ------------------------------------------------------------ host-side helpers

    def _prepare(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> the reused float (N, 3, Hp, Wp) buffer in [0, 1], edge-padded."""
        n, h, w = frames.shape[:3]
        hp, wp = padded_size(h, w, self.contract.size_multiple)
        buf = self._input_buffer(n, hp, wp)
        np.multiply(frames.transpose(0, 3, 1, 2), np.float32(1.0 / 255.0), out=buf[:, :, :h, :w])
        if hp > h:
            buf[:, :, h:, :w] = buf[:, :, h - 1 : h, :w]
        if wp > w:
            buf[:, :, :, w:] = buf[:, :, :, w - 1 : w]
        return buf

    def _input_buffer(self, n: int, hp: int, wp: int) -> np.ndarray:
        """The float32 (N, 3, Hp, Wp) array frames are written into; back-ends may hand out one they have bound."""
        if self._in is None or self._in.shape != (n, 3, hp, wp):
            self._in = np.empty((n, 3, hp, wp), np.float32)
        return self._in

    def _finish(self, out: np.ndarray, h: int, w: int, dest: np.ndarray | None = None) -> np.ndarray:
        """float (N, 3, Hp, Wp) in [0, 1] -> uint8 (N, H, W, 3), written into `dest` (caller-owned) or a new array."""
        n = out.shape[0]
        if self._scaled is None or self._scaled.shape != (n, 3, h, w):
            self._scaled = np.empty((n, 3, h, w), np.float32)
            self._planes = np.empty((n, 3, h, w), np.uint8)
        scaled, planes = self._scaled, self._planes
        assert planes is not None
        np.multiply(out[:, :, :h, :w], np.float32(255.0), out=scaled)
        scaled += np.float32(0.5)
        np.clip(scaled, 0, 255, out=scaled)
        rgb = dest if dest is not None else np.empty((n, h, w, 3), np.uint8)
        # Casting truncates, so +0.5 rounds; C order lets PyAV take it without a copy. Cast planar first,
        # then interleave one channel at a time: 0.9 ms instead of 2.3-2.6 ms (a transposing cast) at 640x360.
        np.copyto(planes, scaled, casting="unsafe")
        for c in range(3):
            rgb[:, :, :, c] = planes[:, c]
        return rgb

    def _vectors(self, n: int, weights: np.ndarray, strength: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Style weights (S,) or (N, S) and strength (scalar or (N,)) as the graph's (N, F) film and (N, 1)
        strength inputs. S may be the trained styles only: fitted styles then weigh 0."""
        wv = np.asarray(weights, np.float32)
        key = (n, wv.shape, wv.tobytes(), np.asarray(strength, np.float32).tobytes(), self.styles)
        last = self._vector_key
        if last is not None and last[:4] == key[:4] and last[4] is self.styles and self._vector_value is not None:
            return self._vector_value
        wv = np.broadcast_to(wv.reshape(1, -1) if wv.ndim == 1 else wv, (n, wv.shape[-1]))
        sv = np.array(np.broadcast_to(np.asarray(strength, np.float32).reshape(-1, 1), (n, 1)), np.float32)
        self._vector_key, self._vector_value = key, (self.styles.mix(wv, sv), sv)
        return self._vector_value

    @staticmethod
    def _check_frames(frames: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 frames (N, H, W, 3), got {frames.dtype} {frames.shape}")

    # ------------------------------------------------------------ the interface

    @abstractmethod
    def run(self, image: np.ndarray, film: np.ndarray, strength: np.ndarray) -> np.ndarray:
        """Raw contract call on host arrays: (N,3,H,W) float32, film (N,F), (N,1) -> (N,3,H,W) float32."""

    def stylize_batch(self, frames: np.ndarray, weights: np.ndarray, strength: float | np.ndarray = 1.0,
                      out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (N, H, W, 3) + weights (S,) or (N, S) -> stylized RGB uint8 (N, H, W, 3) (into `out` if given).

        S counts this back-end's styles (`style_names`), or only the trained ones."""
        self._check_frames(frames)
        n, h, w = frames.shape[:3]
        wv, sv = self._vectors(n, weights, strength)
        return self._finish(self.run(self._prepare(frames), wv, sv), h, w, out)

    def stylize(self, rgb: np.ndarray, weights: np.ndarray, strength: float = 1.0,
                out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3) + style weights (S,) -> stylized RGB uint8 (H, W, 3) (into `out` if given)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.dtype} {rgb.shape}")
        res = self.stylize_batch(rgb[None], weights, strength, None if out is None else out[None])
        return res[0]

    def stylize_yuv420p(self, yuv: np.ndarray, weights: np.ndarray, strength: float = 1.0,
                        overlay: OverlayPatch | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """yuv420p uint8 (H*3/2, W) as PyAV lays it out -> the stylized frame, same layout (BT.601 limited range).

        This host version converts colour on the CPU; GPU back-ends override it to convert on the device.
        """
        from engines import yuv as yuvconv

        rgb = yuvconv.yuv420p_to_rgb_numpy(yuv)
        styl = self.stylize(rgb, weights, strength)
        if overlay is not None:
            yuvconv.composite_numpy(styl, overlay)
        return yuvconv.rgb_to_yuv420p_numpy(styl, out)

    def close(self) -> None:  # noqa: B027 (optional hook: most back-ends hold nothing to release)
        """Release device memory and sessions (optional)."""


def __getattr__(name: str) -> Any:
    # `from engines.backends import OnnxBackend` keeps working without importing every back-end up front.
    for info in REGISTRY.values():
        if info.cls == name:
            return getattr(importlib.import_module(info.module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
