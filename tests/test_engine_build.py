"""Engine builds and the CPU back-ends: fused graph, ONNX export (FP32 and the FP16 `.half()` export that
TensorRT builds from), int8, engine.json and its cache key, device colour conversion, and bad artifacts
reported as one line. Everything up to the TensorRT builder runs here; the GPU half is tests/test_gpu.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.artifact import Artifact, save_artifact
from engines.backends import BackendError, parse_choice
from engines.build import BuildConfig, build, parse_dynamic, parse_size
from engines.contract import IOContract
from engines.engine_spec import ENGINE_FILE, cache_key, file_sha256, read_engine
from engines.fused_student import fuse
from engines.loader import cuda_available, load_backend
from engines.onnx_export import STAMP_PRECISION, STAMP_WEIGHTS, export_onnx, read_stamp, stamp
from engines.parity import THRESHOLD_DB, measure, parity_frames, parity_mixes, psnr
from engines.student import StudentConfig, StudentNet, film_weights, mix_film

REPO = Path(__file__).resolve().parents[1]
STYLES = ("ink", "neon", "pastel")


def tiny_net(seed: int = 0) -> StudentNet:
    """A small student with random but visible weights (the head is not zero, so the output is restyled);
    with a 1/2-resolution block, so every export and back-end is checked on that layer too."""
    torch.manual_seed(seed)
    net = StudentNet(StudentConfig(num_styles=len(STYLES), enc_channels=16, body_channels=32, half_channels=8,
                                   blocks=2, half_blocks=1))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.15)
    return net.eval()


def save_tiny(path: Path, seed: int = 0) -> Artifact:
    art = save_artifact(tiny_net(seed), IOContract(style_names=STYLES), path, provenance={"test": True})
    (path / "thumbs").mkdir(exist_ok=True)
    for name in STYLES:
        (path / "thumbs" / f"{name}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return art


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def built(tiny: Artifact, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """onnx fp32 and int8 engine folders of the tiny model (int8 calibrates on the real bundled frames)."""
    root = tmp_path_factory.mktemp("engines")
    out = {}
    for precision in ("fp32", "int8"):
        out[precision], fresh = build(BuildConfig(checkpoint=tiny.path, backend="onnx", precision=precision,
                                                  size=(320, 184), out=root / precision))
        assert fresh
    return out


def small_frames() -> list[np.ndarray]:
    return parity_frames(184, 320, real=3)


# ---------------------------------------------------------------- graph and export


@pytest.mark.unit
def test_fused_graph_is_the_same_function() -> None:
    net = tiny_net(3)
    fused = fuse(net)
    for n, h, w in ((1, 64, 96), (3, 40, 8)):
        x, wts, s = torch.rand(n, 3, h, w), torch.rand(n, len(STYLES)), torch.rand(n, 1)
        with torch.no_grad():
            film = mix_film(net, film_weights(net.config, wts, s))  # the host's mixing (StyleBank.mix)
            assert torch.allclose(net(x, wts, s), fused(x, film, s), atol=2e-6)


@pytest.mark.unit
def test_onnx_fp32_export_parity_and_stamp(tiny: Artifact, tmp_path: Path) -> None:
    path = export_onnx(tiny.load_student(), tiny.contract, tmp_path / "m.onnx", weights_sha256=tiny.weights_sha256)
    props = read_stamp(path)
    assert props[STAMP_WEIGHTS] == tiny.weights_sha256 and props[STAMP_PRECISION] == "fp32"
    onnx_b, ref = load_backend(tiny.path, "onnx"), load_backend(tiny.path, "torch")
    result = measure(onnx_b, ref, small_frames(), parity_mixes(tiny.contract), strength=0.8)
    assert result.min_db >= THRESHOLD_DB["fp32"], result
    # The tiny model really restyles, so parity is not trivially "input == output".
    x = small_frames()[0]
    assert np.abs(ref.stylize(x, tiny.contract.weights_vector(None)).astype(int) - x).mean() > 3


@pytest.mark.unit
def test_fp16_half_export_is_strongly_typed_and_close(tiny: Artifact, tmp_path: Path) -> None:
    """The `.half()` ONNX that TensorRT builds from: every I/O tensor float16; where ONNX Runtime's CPU
    provider runs it, its output is within the FP16 floor of PyTorch FP32."""
    import onnx
    import onnxruntime as ort

    path = export_onnx(tiny.load_student(), tiny.contract, tmp_path / "h.onnx", half=True)
    model = onnx.load(str(path))
    io = [*model.graph.input, *model.graph.output]
    assert {t.type.tensor_type.elem_type for t in io} == {onnx.TensorProto.FLOAT16}
    assert read_stamp(path)[STAMP_PRECISION] == "fp16"
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # pragma: no cover - depends on the onnxruntime build
        pytest.skip(f"onnxruntime CPU cannot run the fp16 graph: {exc}")
    ref = load_backend(tiny.path, "torch")
    for frame in small_frames()[:2]:
        for _, vec in parity_mixes(tiny.contract):
            x = (frame.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
            film = ref.styles.mix(vec[None], np.ones((1, 1), np.float32))
            out = sess.run(None, {"image": x.astype(np.float16), "film": film.astype(np.float16),
                                  "strength": np.ones((1, 1), np.float16)})[0]
            got = (np.clip(out.astype(np.float32)[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
            assert psnr(got, ref.stylize(frame, vec)) >= THRESHOLD_DB["fp16"]


# ---------------------------------------------------------------- built engines


@pytest.mark.integration
def test_built_engines_meet_parity_and_describe_themselves(built: dict[str, Path], tiny: Artifact) -> None:
    ref = load_backend(tiny.path, "torch")
    for precision, folder in built.items():
        meta = json.loads((folder / ENGINE_FILE).read_text())
        assert meta["backend"] == "onnx" and meta["precision"] == precision
        assert meta["style_names"] == list(STYLES) and meta["weights_sha256"] == tiny.weights_sha256
        assert meta["contract"]["inputs"] == ["image", "film", "strength"]
        assert {"torch", "onnxruntime", "tensorrt", "onnx"} <= set(meta["versions"])
        assert meta["gpu"] is None  # only TensorRT plans are tied to a GPU
        assert meta["parity"]["min_db"] >= THRESHOLD_DB[precision]
        assert meta["cache_key"] == cache_key(meta)
        # Self-contained: the model's own files travel with the engine (thumbnails for the server).
        for name in ("model.json", "student.pt", "student.onnx", "student.film.npz", "thumbs/ink.jpg", meta["file"]):
            assert (folder / name).is_file(), name
        backend = load_backend(folder)  # auto: what it was built for
        assert backend.name == ("onnx" if precision == "fp32" else "onnx-int8")
        result = measure(backend, ref, small_frames(), parity_mixes(tiny.contract))
        assert result.min_db >= THRESHOLD_DB[precision], (precision, str(result))
        # Weights and strength are inputs: a new blend needs no rebuild and gives a new picture.
        x = small_frames()[0]
        a = backend.stylize(x, tiny.contract.weights_vector({"ink": 1}))
        b = backend.stylize(x, tiny.contract.weights_vector({"ink": 0.5, "pastel": 0.5}), 0.7)
        assert np.abs(a.astype(int) - b).mean() > 1
    # Another back-end from the same self-contained folder.
    assert load_backend(built["int8"], "torch").name == "torch"


@pytest.mark.integration
def test_cache_key_is_stable_and_follows_the_weights(built: dict[str, Path], tiny: Artifact, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = read_engine(built["fp32"])
    cfg = BuildConfig(checkpoint=tiny.path, backend="onnx", precision="fp32", size=(320, 184), out=built["fp32"])
    assert build(cfg) == (built["fp32"], False)  # same inputs: up to date, nothing rebuilt
    assert "up to date" in capsys.readouterr().err
    assert read_engine(built["fp32"]).cache_key == spec.cache_key
    other = save_tiny(tmp_path / "other", seed=1)
    meta = dict(spec.meta, weights_sha256=other.weights_sha256)
    assert cache_key(meta) != spec.cache_key
    assert cache_key(dict(spec.meta, precision="int8")) != spec.cache_key
    assert cache_key(dict(spec.meta, created="another day", parity={})) == spec.cache_key
    # Rebuilding from other weights into the same folder replaces the engine.
    out, fresh = build(BuildConfig(checkpoint=other.path, backend="onnx", precision="fp32", size=(320, 184),
                                   out=tmp_path / "e", check=False))
    assert fresh and read_engine(out).cache_key not in (spec.cache_key, "")


@pytest.mark.unit
def test_build_arguments() -> None:
    assert parse_size("1280x720") == (1280, 720)
    assert parse_dynamic("640x360:1280x720:1920x1080") == ((640, 360), (1280, 720), (1920, 1080))
    for bad in ("1280", "axb", "0x5"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError, match="MIN <= OPT"):
        parse_dynamic("1920x1080:1280x720:640x360")
    assert parse_choice("onnx-int8") == ("onnx", "int8")
    assert parse_choice("torch-cuda") == ("torch-cuda", None)
    assert parse_choice("tensorrt-fp16") == ("tensorrt", "fp16")
    with pytest.raises(BackendError, match="unknown back-end"):
        parse_choice("onnx-int4")


@pytest.mark.integration
def test_tensorrt_build_goes_as_far_as_this_machine_allows(tiny: Artifact, tmp_path: Path) -> None:
    """Without TensorRT (or a GPU) the build exports the FP16 `.half()` ONNX, then stops with one clear line."""
    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except ImportError:
        have_trt = False
    if have_trt and cuda_available():
        pytest.skip("TensorRT and a GPU are here: tests/test_gpu.py builds for real")
    cfg = BuildConfig(checkpoint=tiny.path, backend="tensorrt", precision="fp16", size=(320, 184), out=tmp_path / "t")
    with pytest.raises(BackendError, match="TensorRT|CUDA GPU") as err:
        build(cfg)
    assert "\n" not in str(err.value)
    assert read_stamp(tmp_path / "t" / "student.fp16.onnx")[STAMP_PRECISION] == "fp16"
    assert not (tmp_path / "t" / ENGINE_FILE).exists()  # no engine.json: the folder is not a usable engine


@pytest.mark.unit
def test_stale_int8_is_refused_and_auto_falls_back(tiny: Artifact, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny.path, folder)
    shutil.copy(tiny.onnx_path, folder / "student.int8.onnx")
    stamp(folder / "student.int8.onnx", **{STAMP_WEIGHTS: "0" * 64, STAMP_PRECISION: "int8"})
    with pytest.raises(BackendError, match="other weights"):
        load_backend(folder, "onnx-int8")
    assert load_backend(folder).name == ("torch-cuda-fp16" if cuda_available() else _auto_cpu("fp32"))


def _auto_cpu(precision: str) -> str:
    """What "auto" names on this machine's CPU runtime: OpenVINO where installed, else ONNX Runtime."""
    from engines.backends import backend_name
    from engines.loader import cpu_runtime

    return backend_name(cpu_runtime() or "torch", precision)


@pytest.mark.unit
def test_auto_runs_int8_only_on_the_runtime_it_was_measured_faster_on(built: dict[str, Path], tiny: Artifact,
                                                                      tmp_path: Path) -> None:
    from engines.loader import cpu_runtime
    from engines.onnx_export import STAMP_INT8_RUNTIME

    if cuda_available():
        pytest.skip("auto picks the GPU here")
    folder = tmp_path / "m"
    shutil.copytree(tiny.path, folder)
    shutil.copy(built["int8"] / "student.int8.onnx", folder / "student.int8.onnx")  # current: same weights
    assert load_backend(folder).name == _auto_cpu("int8")  # unstamped (engine builds): int8 preferred
    stamp(folder / "student.int8.onnx", **{STAMP_INT8_RUNTIME: "some-other-runtime"})
    assert load_backend(folder).name == _auto_cpu("fp32")
    stamp(folder / "student.int8.onnx", **{STAMP_INT8_RUNTIME: cpu_runtime() or "onnx"})
    assert load_backend(folder).name == _auto_cpu("int8")


@pytest.mark.unit
def test_int8_selection_keeps_the_most_sensitive_convs_fp32(tmp_path: Path) -> None:
    """The plan quantizes the largest set of the least sensitive convs that clears the bar."""
    from engines.quantize import _plan

    cost = {"a": 0.5, "b": 4.0, "c": 1.0, "d": 9.0, "e": 0.2}  # dB each conv costs when int8

    class Fake:
        def __init__(self) -> None:
            self.convs, self.tmp = list(cost), tmp_path

        def write(self, out: Path, convs: list[str]) -> list[str]:
            return convs

        def score(self, convs: list[str]) -> float:
            return 50.0 - sum(cost[c] for c in convs)

    plan = _plan(Fake(), target_db=47.0)  # type: ignore[arg-type]
    assert plan.full_db == 50.0 - sum(cost.values())
    assert plan.sensitivity == {c: 50.0 - v for c, v in cost.items()}
    assert plan.quantized == ["a", "c", "e"] and plan.kept_fp32 == ["b", "d"] and plan.min_db == 50.0 - 1.7
    assert "kept FP32 by sensitivity: b, d" in plan.summary()
    assert _plan(Fake(), target_db=30.0).kept_fp32 == []  # all clear the bar: no per-conv pass


@pytest.mark.unit
def test_batches_and_caller_owned_output(tiny: Artifact) -> None:
    b = load_backend(tiny.path, "onnx")
    frames = np.stack(small_frames()[:3])
    vecs = np.stack([tiny.contract.weights_vector({n: 1}) for n in STYLES])
    out = np.zeros_like(frames)
    res = b.stylize_batch(frames, vecs, np.array([1.0, 0.5, 0.0]), out=out)
    assert res is out
    for i in range(3):
        assert np.array_equal(out[i], b.stylize(frames[i], vecs[i], [1.0, 0.5, 0.0][i]))
    assert np.abs(out[2].astype(int) - frames[2]).max() <= 1  # strength 0 is the input


# ---------------------------------------------------------------- device path, run on the CPU


@pytest.mark.unit
def test_yuv_conversion_matches_pyav() -> None:
    import av

    from engines import yuv

    # Real photos only: on pure noise swscale's wider chroma filter and our 2x2 mean part ways (both are valid).
    for rgb in parity_frames(184, 320, real=3)[:3]:
        ref_yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        ours = yuv.rgb_to_yuv420p_numpy(rgb)
        db, worst = psnr(ours, ref_yuv), int(np.abs(ours.astype(int) - ref_yuv).max())
        assert db >= 50 and worst <= 3, (db, worst)
        ref_rgb = av.VideoFrame.from_ndarray(ref_yuv, format="yuv420p").to_ndarray(format="rgb24")
        back = yuv.yuv420p_to_rgb_numpy(ref_yuv)
        # swscale's fast fixed-point path rounds differently; same matrix, within a few code values.
        db, worst = psnr(back, ref_rgb), int(np.abs(back.astype(int) - ref_rgb).max())
        assert db >= 40 and worst <= 4, (db, worst)
    with pytest.raises(ValueError, match="even"):
        yuv.rgb_to_yuv420p_numpy(np.zeros((5, 8, 3), np.uint8))


@pytest.mark.unit
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_device_path_runs_on_cpu(tiny: Artifact, precision: str) -> None:
    """The torch-cuda frame path (buffers, padding, yuv in/out, overlay, batches) on device="cpu"."""
    from engines import yuv
    from engines.backend_torch_cuda import TorchCudaBackend

    dev = TorchCudaBackend(tiny, precision, device="cpu")
    ref = load_backend(tiny.path, "torch")
    floor = THRESHOLD_DB[precision]
    frames = [f[:182, :318] for f in small_frames()]  # not a multiple of 8: exercises the padding
    assert measure(dev, ref, frames, parity_mixes(tiny.contract), strength=0.9).min_db >= floor
    vec = tiny.contract.weights_vector({"neon": 0.6, "pastel": 0.4})
    batch = np.stack(frames)
    assert psnr(dev.stylize_batch(batch, vec), np.stack([ref.stylize(f, vec) for f in frames])) >= floor

    class Patch:
        x, y = 40, 120
        alpha = np.full((30, 200, 1), 0.75, np.float32)
        rgb = np.full((30, 200, 3), 255.0 * 0.75, np.float32)

    frame = yuv.rgb_to_yuv420p_numpy(frames[0])
    want = ref.stylize_yuv420p(frame, vec, 0.9, overlay=Patch())  # host conversion and compositing
    got = dev.stylize_yuv420p(frame, vec, 0.9, overlay=Patch())
    assert got.shape == frame.shape and psnr(got, want) >= 40
    plain = dev.stylize_yuv420p(frame, vec, 0.9)  # the overlay goes away when no longer given
    assert psnr(plain, ref.stylize_yuv420p(frame, vec, 0.9)) >= 40
    assert int(got[130, 100]) >= max(170, int(plain[130, 100]))  # 75% white over the picture: bright luma
    dev.network_step(2, 184, 320)()


# ---------------------------------------------------------------- optional CPU back-ends


@pytest.mark.integration
def test_openvino_backends(built: dict[str, Path], tiny: Artifact) -> None:
    pytest.importorskip("openvino")
    from engines.backend_openvino import bf16_supported

    ref = load_backend(tiny.path, "torch")
    names = ["openvino-fp32", "openvino-int8"] + (["openvino-bf16"] if bf16_supported() else [])
    for name in names:
        b = load_backend(built["int8"], name)
        res = measure(b, ref, small_frames(), parity_mixes(tiny.contract))
        assert res.min_db >= THRESHOLD_DB[name.rsplit("-", 1)[1]], (name, str(res))
    if not bf16_supported():
        with pytest.raises(BackendError, match="bf16"):
            load_backend(built["int8"], "openvino-bf16")


@pytest.mark.integration
def test_openvino_upsampling_rewrite_is_the_same_function(built: dict[str, Path], tiny: Artifact) -> None:
    """The three 2x bilinear resizes become pad + transposed conv; the output does not change."""
    pytest.importorskip("openvino")
    from engines.backend_openvino import OpenVinoBackend

    for precision in ("fp32", "int8"):
        fast = OpenVinoBackend(tiny, precision, threads=1, spec=read_engine(built["int8"]) if precision == "int8"
                               else None)
        plain = OpenVinoBackend(tiny, precision, threads=1, spec=read_engine(built["int8"]) if precision == "int8"
                                else None, rewrite=False)
        assert fast.rewritten == 3 and plain.rewritten == 0
        for frame in small_frames():
            for _, vec in parity_mixes(tiny.contract):
                for strength in (1.0, 0.4):
                    assert psnr(fast.stylize(frame, vec, strength), plain.stylize(frame, vec, strength)) >= 50


@pytest.mark.unit
def test_gpu_backends_refuse_clearly_without_cuda(built: dict[str, Path], tiny: Artifact, tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("a GPU is here")
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        load_backend(tiny.path, "torch-cuda")
    with pytest.raises(BackendError, match="no TensorRT engine|needs TensorRT"):
        load_backend(tiny.path, "tensorrt")
    # A TensorRT engine folder (hand-made metadata, no real plan) on a machine without TensorRT/GPU.
    folder = tmp_path / "trt"
    shutil.copytree(built["fp32"], folder)
    meta = json.loads((folder / ENGINE_FILE).read_text())
    meta.update(backend="tensorrt", precision="fp16", file="student.plan", gpu={"name": "NVIDIA H100", "capability": "9.0"})
    (folder / "student.plan").write_bytes(b"not a plan")
    meta["file_sha256"] = file_sha256(folder / "student.plan")
    meta["cache_key"] = cache_key(meta)
    (folder / ENGINE_FILE).write_text(json.dumps(meta))
    with pytest.raises(BackendError, match="needs TensorRT|CUDA GPU"):
        load_backend(folder)


# ---------------------------------------------------------------- bad artifacts: one line, exit 2


def _bad_engine_folders(built: Path, tmp: Path) -> dict[str, Path]:
    cases = {}
    missing = tmp / "missing"
    cases["missing"] = missing
    corrupt_meta = tmp / "corrupt_meta"
    shutil.copytree(built, corrupt_meta)
    (corrupt_meta / ENGINE_FILE).write_text("{ not json")
    cases["corrupt engine.json"] = corrupt_meta
    corrupt_file = tmp / "corrupt_file"
    shutil.copytree(built, corrupt_file)
    spec = read_engine(built)
    raw = bytearray((corrupt_file / spec.file).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (corrupt_file / spec.file).write_bytes(bytes(raw))
    cases["corrupt model file"] = corrupt_file
    mismatch = tmp / "mismatch"
    shutil.copytree(built, mismatch)
    model = json.loads((mismatch / "model.json").read_text())
    model["contract"]["style_names"] = ["a", "b", "c"]  # same count, other styles: not what the engine was built for
    (mismatch / "model.json").write_text(json.dumps(model))
    cases["mismatched contract"] = mismatch
    return cases


def _one_line_error(cmd: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
                          stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.integration
def test_bad_artifacts_are_one_clear_line(built: dict[str, Path], tiny: Artifact, tmp_path: Path) -> None:
    py = sys.executable
    expect = {"missing": "no such model", "corrupt engine.json": "corrupt engine metadata",
              "corrupt model file": "corrupt", "mismatched contract": "contract does not match"}
    for case, folder in _bad_engine_folders(built["int8"], tmp_path).items():
        line = _one_line_error([py, "-m", "realtime.cli", "serve", "--port", "0", "--engine", str(folder)])
        assert line.startswith("realtime: error:") and expect[case] in line, (case, line)
    line = _one_line_error([py, "-m", "realtime.cli", "serve", "--port", "0", "--backend", "tensorrt-ish"])
    assert "unknown back-end 'tensorrt-ish'" in line
    out = str(tmp_path / "never")
    line = _one_line_error([py, "-m", "engines", "build", "--checkpoint", str(tiny.path), "--backend", "tensorrtx",
                            "--precision", "fp16", "--out", out])
    assert line.startswith("engines: error:") and "unknown back-end" in line
    line = _one_line_error([py, "-m", "engines", "build", "--checkpoint", str(tmp_path / "nope"), "--backend", "onnx",
                            "--precision", "fp32", "--out", out])
    assert "no such model" in line
    line = _one_line_error([py, "-m", "engines", "build", "--checkpoint", str(tiny.path), "--backend", "onnx",
                            "--precision", "bf16", "--out", out])
    assert "not bf16" in line
    line = _one_line_error([py, "-m", "engines", "build", "--checkpoint", str(tiny.path), "--backend", "onnx"])
    assert "required" in line


@pytest.mark.unit
def test_gpu_bench_table_on_the_cpu(tiny: Artifact) -> None:
    """bench-gpu's timing and table code, run through the device path on the CPU (the GPU numbers come
    from scripts/gpu_check.sh)."""
    from engines import bench_gpu
    from engines.backend_torch_cuda import TorchCudaBackend

    b = TorchCudaBackend(tiny, "fp32", device="cpu")
    row = bench_gpu.bench(b, (96, 64), frames=2)
    assert row.net_ms > 0 and row.full_p50 > 0 and row.net_fps_b8 > 0 and row.full_fps_b8 > 0
    text = bench_gpu.table("cpu", [row])
    assert "| cpu | torch-cuda-fp32 | 96x64 |" in text and "full fps b8" in text


@pytest.mark.integration
def test_serve_runs_a_built_engine(built: dict[str, Path]) -> None:
    """`realtime serve --engine DIR` picks the back-end from engine.json and serves the folder's thumbnails."""
    import urllib.request

    from tests.conftest import run_server

    with run_server("--engine", str(built["int8"])) as srv:
        with urllib.request.urlopen(f"{srv.url}/healthz", timeout=10) as resp:
            assert json.loads(resp.read())["backend"] == "onnx-int8"
        with urllib.request.urlopen(f"{srv.url}/thumbs/ink.jpg", timeout=10) as resp:
            assert resp.read() == (built["int8"] / "thumbs" / "ink.jpg").read_bytes()
