"""ONNX export of the student with the contract's tensor names and dynamic sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from engines.contract import INPUT_IMAGE, INPUT_STRENGTH, INPUT_WEIGHTS, OUTPUT_IMAGE, IOContract
from engines.student import StudentNet

OPSET = 18


def export_onnx(net: StudentNet, contract: IOContract, path: str | Path, *, height: int = 360, width: int = 640,
                half: bool = False) -> Path:
    """Write `net` to `path`. Batch, height and width stay dynamic; weights and strength are inputs."""
    path = Path(path)
    net = net.eval().cpu()
    dtype = torch.float16 if half else torch.float32
    if half:
        net = net.half()
    args = (
        torch.rand(1, 3, height, width, dtype=dtype),
        torch.full((1, contract.num_styles), 1.0 / contract.num_styles, dtype=dtype),
        torch.ones(1, 1, dtype=dtype),
    )
    dynamic = {
        INPUT_IMAGE: {0: "batch", 2: "height", 3: "width"},
        INPUT_WEIGHTS: {0: "batch"},
        INPUT_STRENGTH: {0: "batch"},
        OUTPUT_IMAGE: {0: "batch", 2: "height", 3: "width"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: small, dependency-free, and what TensorRT's parser expects.
        torch.onnx.export(
            net, args, str(path),
            input_names=[INPUT_IMAGE, INPUT_WEIGHTS, INPUT_STRENGTH],
            output_names=[OUTPUT_IMAGE],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    if half:
        net.float()
    return path
