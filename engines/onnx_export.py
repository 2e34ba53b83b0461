"""ONNX export of the student with the contract's tensor names and dynamic sizes.

What is exported is the fused inference graph (engines/fused_student.py), not the
training module: same function, fewer full-resolution passes. Each file is stamped
with the weights hash it came from, so a stale derived file (int8, fp16) is caught
at load time instead of silently running old weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from engines.contract import INPUT_FILM, INPUT_IMAGE, INPUT_STRENGTH, OUTPUT_IMAGE, IOContract

if TYPE_CHECKING:  # torch only for exporting: the back-ends read stamps (read_stamp) on serving machines without it
    from engines.student import StudentNet

OPSET = 18
# ONNX metadata_props keys.
STAMP_WEIGHTS = "stylizer.weights_sha256"
STAMP_PRECISION = "stylizer.precision"
STAMP_GRAPH = "stylizer.graph"
# sha256 of the serialised graph (nodes, initializers, shapes), rewritten by every stamp(): a flipped byte in a
# weight or a size constant is caught at load, before a runtime is asked to build it (random flips in the
# fuzz test once had a runtime allocate 24 GB and the kernel kill the process; a damaged size or scale
# constant is the likely cause).
STAMP_CONTENT = "stylizer.graph_sha256"
# The runtime an int8 file measured faster on (`python -m engines quantize` stamps it; "auto" runs int8 only there).
STAMP_INT8_RUNTIME = "stylizer.int8_runtime"
# fused-2: the graph takes the mixed FiLM vector (`film`) instead of style weights (fused-1).
GRAPH_VERSION = "fused-2"


def graph_digest(model) -> str:
    """sha256 of an ONNX model's serialised graph (everything but the metadata that stamp() writes)."""
    import hashlib

    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def stamp(path: str | Path, **props: str) -> None:
    """Add (or replace) metadata_props entries of the ONNX file at `path`, and its graph digest."""
    import onnx

    model = onnx.load(str(path))
    props = {**props, STAMP_CONTENT: graph_digest(model)}
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_stamp(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (empty for unstamped or unreadable files)."""
    return check_stamp(path)[0]


def check_stamp(path: str | Path) -> tuple[dict[str, str], bool]:
    """The metadata_props of an ONNX file, and whether its graph no longer matches the digest stamp() wrote:
    one read for both (unstamped or unreadable files are not called damaged: the runtime reports those)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises DecodeError and others for corrupt files; the back-end reports it
        return {}, False
    props = {p.key: p.value for p in model.metadata_props}
    written = props.get(STAMP_CONTENT)
    return props, written is not None and written != graph_digest(model)


def export_onnx(net: StudentNet, contract: IOContract, path: str | Path, *, height: int = 360, width: int = 640,
                half: bool = False, weights_sha256: str | None = None) -> Path:
    """Write `net` to `path`. Batch, height and width stay dynamic; the FiLM vector and strength are inputs.

    half=True exports a `.half()` model: every tensor, inputs included, is float16, which is what a
    strongly typed TensorRT network needs to build in FP16.
    """
    import torch

    from engines.fused_student import fuse
    from engines.student import film_table, film_weights, mix_film

    path = Path(path)
    model = fuse(net.eval().cpu())
    dtype = torch.float16 if half else torch.float32
    model = model.to(dtype)
    strength = torch.ones(1, 1)
    blend = torch.full((1, contract.num_styles), 1.0 / contract.num_styles)
    with torch.no_grad():
        film = mix_film(net, film_weights(net.config, blend, strength), film_table(net))
    args = (torch.rand(1, 3, height, width, dtype=dtype), film.to(dtype), strength.to(dtype))
    dynamic = {
        INPUT_IMAGE: {0: "batch", 2: "height", 3: "width"},
        INPUT_FILM: {0: "batch"},
        INPUT_STRENGTH: {0: "batch"},
        OUTPUT_IMAGE: {0: "batch", 2: "height", 3: "width"},
    }
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: small, dependency-free, and what TensorRT's parser expects.
        torch.onnx.export(
            model, args, str(tmp),
            input_names=[INPUT_IMAGE, INPUT_FILM, INPUT_STRENGTH],
            output_names=[OUTPUT_IMAGE],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    props = {STAMP_PRECISION: "fp16" if half else "fp32", STAMP_GRAPH: GRAPH_VERSION}
    if weights_sha256:
        props[STAMP_WEIGHTS] = weights_sha256
    stamp(tmp, **props)
    tmp.replace(path)  # never leave a half-written model under the real name
    return path
