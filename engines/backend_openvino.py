"""OpenVINO on the CPU (optional extra): fp32, bf16 where the CPU supports it, or the int8 QDQ model.

bf16 is only offered where OpenVINO reports the BF16 capability (AVX512-BF16 or AMX);
elsewhere asking for it is an error rather than a silent fp32 run. Each frame shape
gets its own statically shaped compiled model (a reshape costs ~0.1 s once) and
an infer request whose input and output tensors share our preallocated arrays.

Before compiling, `cheaper_upsampling` rewrites the graph read from the ONNX file without
changing its maths: OpenVINO's Interpolate is slow on few channels (the 3-channel
full-resolution residual resize was 2.9 of 15.5 ms per 640x360 frame on one core), so
every 2x bilinear resize becomes an edge pad and a fixed depthwise transposed conv, and
the strength multiply moves behind it into the image add. 20-25% less time per frame;
outputs agree with the unrewritten graph to float rounding (tests/test_engine_build.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.artifact import Artifact
from engines.backends import Backend, BackendError, inference_threads
from engines.contract import INPUT_FILM, INPUT_IMAGE, INPUT_STRENGTH

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec


def import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendError("the openvino back-end needs OpenVINO: pip install 'stylizer[openvino]'") from exc
    return ov


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively, as OpenVINO sees it (False where OpenVINO is absent)."""
    try:
        ov = import_openvino()
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # absent package, or a CPU plugin that cannot start
        return False


# 1-D weights of a 2x bilinear upsample (half-pixel centres): outputs 2k and 2k+1 are
# 0.25/0.75 and 0.75/0.25 mixes of inputs k-1, k and k, k+1.
_BILINEAR_X2 = (0.25, 0.75, 0.75, 0.25)


def _constant_values(port: Any) -> list[float] | None:
    node = port.get_source_output().get_node()
    return [float(v) for v in node.get_vector()] if node.get_type_name() == "Constant" else None


def _per_sample_scalar(shape: Any) -> bool:
    """(N, 1, 1, 1): one value per sample, like the strength input."""
    return (shape.rank.is_static and shape.rank.get_length() == 4
            and all(d.is_static and d.get_length() == 1 for d in list(shape)[1:]))


def cheaper_upsampling(model: Any) -> int:
    """Rewrite each 2x bilinear Interpolate (half-pixel, the ONNX Resize the exporter writes) as
    edge-pad + depthwise transposed conv with the fixed bilinear kernel, which is the same
    function: edge padding reproduces the clamped border. A multiply by a per-sample scalar
    feeding the resize (strength) is moved behind it, where it fuses with the image add.
    Returns the number of resizes rewritten; anything that does not match is left alone."""
    import openvino.opset13 as ops

    done = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Interpolate" or node.get_input_size() != 2:
            continue
        attrs = node.get_attributes()
        if (attrs.get("mode") != "linear_onnx" or attrs.get("coordinate_transformation_mode") != "half_pixel"
                or attrs.get("shape_calculation_mode") != "scales" or attrs.get("antialias")
                or any(attrs.get("pads_begin", [])) or any(attrs.get("pads_end", []))):
            continue
        shape = node.input(0).get_partial_shape()
        if _constant_values(node.input(1)) != [1.0, 1.0, 2.0, 2.0] or not shape.rank.is_static \
                or shape.rank.get_length() != 4 or not shape[1].is_static:
            continue
        channels = shape[1].get_length()
        x = node.input_value(0)
        gain = None
        producer = x.get_node()
        if producer.get_type_name() == "Multiply" and len(x.get_target_inputs()) == 1:
            for i in (0, 1):
                if _per_sample_scalar(producer.input(i).get_partial_shape()):
                    gain, x = producer.input_value(i), producer.input_value(1 - i)
                    break
        k = np.array(_BILINEAR_X2, np.float32)
        # GroupConvolutionBackpropData weights: (groups, in/group, out/group, kH, kW).
        kernel = np.ascontiguousarray(np.broadcast_to(np.outer(k, k), (channels, 1, 1, 4, 4)), np.float32)
        edge = ops.constant(np.array([0, 0, 1, 1], np.int64))
        padded = ops.pad(x, edge, edge, "edge")
        # With a one-pixel edge pad, pads of 3 crop the transposed conv's output to exactly 2H x 2W.
        up = ops.group_convolution_backprop_data(padded, ops.constant(kernel), strides=[2, 2], pads_begin=[3, 3],
                                                 pads_end=[3, 3], dilations=[1, 1])
        out = up if gain is None else ops.multiply(up, gain)
        node.output(0).replace(out.output(0))
        done += 1
    if done:
        model.validate_nodes_and_infer_types()
    return done


@dataclass
class _Slot:
    image: np.ndarray  # (N, 3, Hp, Wp) float32, shared with the infer request
    film: np.ndarray  # (N, F)
    strength: np.ndarray
    out: np.ndarray
    request: Any


class OpenVinoBackend(Backend):
    """OpenVINO CPU plugin over the artifact's ONNX (fp32 file for fp32/bf16, int8 file for int8)."""

    kind = "openvino"

    def __init__(self, artifact: Artifact, precision: str = "fp32", threads: int | None = None,
                 spec: EngineSpec | None = None, rewrite: bool = True) -> None:
        super().__init__(artifact, precision)
        ov = import_openvino()
        from engines.backend_onnx import check_graph_inputs, onnx_file, stale_reason

        self._ov = ov
        self.core = ov.Core()
        if precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendError("this CPU has no native bf16 (needs AVX512-BF16 or AMX); use openvino-fp32")
        path = onnx_file(artifact, "int8" if precision == "int8" else "fp32", spec)
        if not path.is_file():
            raise BackendError(f"{artifact.path}: no {path.name} for openvino-{precision}")
        stale = stale_reason(artifact, path)
        if stale:
            raise BackendError(stale)
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable files
            raise BackendError(f"{path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from exc
        check_graph_inputs(path, {name for port in self.model.inputs for name in port.get_names()})
        # bf16 is left as read: its transposed convs ran slower than the resizes (28.6 vs 23.7 ms).
        self.rewritten = 0
        if rewrite and precision != "bf16":
            try:
                self.rewritten = cheaper_upsampling(self.model)
            except Exception as exc:  # an OpenVINO without these ops/APIs: run the graph as read
                print(f"engines: note: openvino resize rewrite skipped ({str(exc).splitlines()[0]})", file=sys.stderr)
                self.model = self.core.read_model(str(path))
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads or inference_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._slots: dict[tuple[int, ...], _Slot] = {}

    def _slot(self, shape: tuple[int, ...]) -> _Slot:
        slot = self._slots.get(shape)
        if slot is None:
            ov, n = self._ov, shape[0]
            s = self.film_width
            self.model.reshape({INPUT_IMAGE: list(shape), INPUT_FILM: [n, s], INPUT_STRENGTH: [n, 1]})
            compiled = self.core.compile_model(self.model, "CPU", self.config)
            slot = _Slot(np.zeros(shape, np.float32), np.zeros((n, s), np.float32), np.zeros((n, 1), np.float32),
                         np.zeros(shape, np.float32), compiled.create_infer_request())
            req = slot.request
            for name, arr in ((INPUT_IMAGE, slot.image), (INPUT_FILM, slot.film), (INPUT_STRENGTH, slot.strength)):
                req.set_tensor(name, ov.Tensor(arr, shared_memory=True))
            req.set_output_tensor(0, ov.Tensor(slot.out, shared_memory=True))
            self._slots = {shape: slot}  # one live size at a time
        return slot

    def _input_buffer(self, n: int, hp: int, wp: int) -> np.ndarray:
        return self._slot((n, 3, hp, wp)).image

    def run(self, image: np.ndarray, film: np.ndarray, strength: np.ndarray) -> np.ndarray:
        slot = self._slot(tuple(image.shape))
        if image is not slot.image:
            np.copyto(slot.image, image)
        np.copyto(slot.film, film)
        np.copyto(slot.strength, strength)
        # share_outputs: the call's return value then wraps slot.out instead of copying it (a frame-sized array).
        slot.request.infer(share_outputs=True)
        return slot.out
