"""GPU back-ends on a CUDA machine (skipped without CUDA): torch-cuda FP16/FP32 parity, colour conversion on
the device, the CUDA graph path, batches, and TensorRT where it is installed. Run by scripts/gpu_check.sh.
Needs only torch, numpy, pillow and onnx (no PyAV/aiortc), so it runs on a bare GPU machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.artifact import load_artifact
from engines.backends import BackendError
from engines.loader import load_backend
from engines.parity import THRESHOLD_DB, measure, parity_frames, parity_mixes, psnr

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def reference():
    return load_backend(None, "torch")


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_torch_cuda_parity(reference, precision: str) -> None:
    b = load_backend(None, f"torch-cuda-{precision}")
    assert b.device == "cuda"
    for h, w in ((360, 640), (720, 1280)):
        res = measure(b, reference, parity_frames(h, w, real=3), parity_mixes(b.contract), strength=0.9)
        print(f"torch-cuda-{precision} {w}x{h}: {res}")
        assert res.min_db >= THRESHOLD_DB[precision], str(res)


def test_yuv_conversion_on_device_matches_cpu() -> None:
    from engines import yuv

    rng = np.random.default_rng(0)
    packed = torch.from_numpy(rng.integers(0, 256, (2, 720 * 3 // 2, 1280), dtype=np.uint8))
    cpu_rgb = yuv.yuv420p_to_rgb(packed)
    gpu_rgb = yuv.yuv420p_to_rgb(packed.cuda())
    assert (gpu_rgb.cpu() - cpu_rgb).abs().max().item() < 1e-5
    rgb = torch.rand(2, 3, 720, 1280)
    cpu_yuv = yuv.rgb_to_yuv420p(rgb)
    gpu_yuv = yuv.rgb_to_yuv420p(rgb.cuda()).cpu()
    assert (gpu_yuv.int() - cpu_yuv.int()).abs().max().item() <= 1


def test_yuv_path_on_device_matches_the_host_path(reference) -> None:
    from engines.yuv import rgb_to_yuv420p_numpy

    b = load_backend(None, "torch-cuda-fp16")
    vec = b.contract.weights_vector({b.style_names[0]: 0.5, b.style_names[-1]: 0.5})
    for frame in parity_frames(720, 1280, real=2):
        yuv = rgb_to_yuv420p_numpy(frame)
        got = b.stylize_yuv420p(yuv, vec, 0.8)
        want = reference.stylize_yuv420p(yuv, vec, 0.8)  # CPU conversion around the FP32 reference
        assert got.shape == yuv.shape and psnr(got, want) >= THRESHOLD_DB["fp16"]


def test_cuda_graph_path_is_exact_allocation_free_and_blends_without_recapture() -> None:
    from engines.backend_torch_cuda import TorchCudaBackend

    art = load_artifact()
    graphed, eager = TorchCudaBackend(art, "fp16"), TorchCudaBackend(art, "fp16", cuda_graph=False)
    frame = parity_frames(720, 1280, real=1)[0]
    out = np.empty_like(frame)
    names = art.contract.style_names
    for style in names[:3]:
        vec = art.contract.weights_vector({style: 1.0})
        assert psnr(graphed.stylize(frame, vec, 1.0, out=out), eager.stylize(frame, vec, 1.0)) >= 60
    slot = next(iter(graphed._slots.values()))
    graph = slot.graph
    assert graph is not None
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    results = []
    for i in range(20):
        vec = art.contract.weights_vector({names[i % len(names)]: 1.0, names[-1]: i / 20})
        graphed.stylize(frame, vec, 0.5 + i / 40, out=out)
        results.append(out.copy())
    torch.cuda.synchronize()
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == before  # no per-frame device allocation
    assert len(graphed._slots) == 1 and next(iter(graphed._slots.values())).graph is graph  # never re-captured
    assert np.abs(results[0].astype(int) - results[1]).mean() > 0.5  # new weights, new picture


def test_batch_of_eight_matches_single_frames() -> None:
    b = load_backend(None, "torch-cuda-fp16")
    frames = parity_frames(360, 640, real=4)
    batch = np.stack([frames[i % len(frames)] for i in range(8)])
    vecs = np.stack([b.contract.weights_vector({b.style_names[i % len(b.style_names)]: 1.0}) for i in range(8)])
    got = b.stylize_batch(batch, vecs)
    for i in range(8):
        assert psnr(got[i], b.stylize(batch[i], vecs[i])) >= 50


def test_network_step_runs() -> None:
    b = load_backend(None, "torch-cuda-fp16")
    step = b.network_step(8, 720, 1280)
    step()
    torch.cuda.synchronize()


def test_onnx_runtime_cuda_provider(reference) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDA provider (install onnxruntime-gpu)")
    b = load_backend(None, "onnx")
    assert b.device == "cuda"
    res = measure(b, reference, parity_frames(360, 640, real=2), parity_mixes(b.contract))
    assert res.min_db >= THRESHOLD_DB["fp32"], str(res)


def test_tensorrt_engine(reference, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from engines.build import BuildConfig, build
    from engines.engine_spec import ENGINE_FILE, cache_key

    out, _ = build(BuildConfig(checkpoint=load_artifact().path, backend="tensorrt", precision="fp16",
                               size=(1280, 720), dynamic=((640, 360), (1280, 720), (1920, 1080)), out=tmp_path / "trt"))
    b = load_backend(out)
    assert b.name == "tensorrt-fp16"
    for h, w in ((360, 640), (720, 1280)):
        res = measure(b, reference, parity_frames(h, w, real=3), parity_mixes(b.contract))
        print(f"tensorrt-fp16 {w}x{h}: {res}")
        assert res.min_db >= THRESHOLD_DB["fp16"], str(res)
    with pytest.raises(BackendError, match="outside this engine's profile"):
        b.stylize(np.zeros((2160, 3840, 3), np.uint8), b.contract.weights_vector(None))
    # A corrupt plan and a plan from another GPU are refused with one line.
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "student.plan").write_bytes(b"\0" * 1000)
    with pytest.raises(BackendError, match="corrupt"):
        load_backend(bad)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    meta = json.loads((other / ENGINE_FILE).read_text())
    meta["gpu"] = {"name": "NVIDIA Imaginary", "capability": "1.0"}
    meta["cache_key"] = cache_key(meta)
    (other / ENGINE_FILE).write_text(json.dumps(meta))
    with pytest.raises(BackendError, match="built for NVIDIA Imaginary"):
        load_backend(other)
