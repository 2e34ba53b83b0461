"""engine.json: what a built engine folder is, what it was built from and on, and its cache key.

An engine folder is self-contained: the model folder's files (model.json,
student.pt, student.onnx, thumbs/) plus the back-end's own file, described here:

    backend, precision, file, file_sha256   what runs, and a hash that catches a corrupt file
    size, profile                           the frame size it was tuned for; min/opt/max (N, H, W) it accepts
    contract, student_config, weights_sha256  the I/O contract and the weights it came from
    versions                                torch, onnx, onnxruntime, tensorrt, openvino as installed at build
    gpu                                     name and compute capability (GPU back-ends), else null
    cache_key                               sha256 of the fields above that change the built file
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.artifact import Artifact, ArtifactError
from engines.backends import REGISTRY
from engines.contract import IOContract

ENGINE_FILE = "engine.json"
ENGINE_FORMAT = "stylizer-engine"
ENGINE_FORMAT_VERSION = 1
# Which package versions change what a back-end's build produces (and so its cache key).
KEY_VERSIONS = {
    "onnx": ("torch", "onnxruntime"),
    "openvino": ("torch", "openvino"),
    "torch-cuda": ("torch",),
    "tensorrt": ("torch", "tensorrt"),
}
KEY_FIELDS = ("format_version", "backend", "precision", "size", "profile", "graph", "contract", "student_config",
              "weights_sha256", "gpu")


def package_versions() -> dict[str, str]:
    """Versions of the packages an engine can depend on ("none" where absent), without importing the heavy ones."""
    from importlib import metadata

    out = {}
    for name, dist in (("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
                       ("tensorrt", "tensorrt"), ("openvino", "openvino")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "none"
    if out["onnxruntime"] == "none":
        try:
            out["onnxruntime"] = metadata.version("onnxruntime-gpu")
        except metadata.PackageNotFoundError:
            pass
    if out["tensorrt"] == "none":  # the wheels are also published per CUDA major version
        for dist in ("tensorrt-cu13", "tensorrt-cu12"):
            try:
                out["tensorrt"] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                pass
    return out


def gpu_info() -> dict[str, str] | None:
    """{"name", "capability"} of the current CUDA device, or None without one."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability()
        return {"name": torch.cuda.get_device_name(), "capability": f"{major}.{minor}"}
    except Exception:  # a broken CUDA install means "no GPU"
        return None


def cache_key(meta: dict[str, Any]) -> str:
    """sha256 over everything that changes the built file: same inputs, same key."""
    keyed = {k: meta.get(k) for k in KEY_FIELDS}
    versions = meta.get("versions", {})
    keyed["versions"] = {v: versions.get(v) for v in KEY_VERSIONS.get(str(meta.get("backend")), ())}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class EngineSpec:
    """A parsed engine.json."""

    path: Path
    backend: str
    precision: str
    file: str
    file_sha256: str
    size: tuple[int, int]  # (width, height)
    profile: dict[str, list[int]] | None  # {"min"|"opt"|"max": [N, H, W]}
    contract: IOContract
    weights_sha256: str
    versions: dict[str, str]
    gpu: dict[str, str] | None
    cache_key: str
    meta: dict = field(default_factory=dict)

    @property
    def file_path(self) -> Path:
        return self.path / self.file

    def check_file(self) -> None:
        """The back-end's file is there and is the one that was built (not truncated or edited)."""
        p = self.file_path
        if not p.is_file():
            raise ArtifactError(f"{p}: missing; the engine folder is incomplete (rebuild with python -m engines build)")
        if file_sha256(p) != self.file_sha256:
            raise ArtifactError(f"{p}: corrupt (hash does not match {ENGINE_FILE}); rebuild with python -m engines build")

    def check_matches(self, art: Artifact) -> None:
        """engine.json and the folder's model.json describe the same network."""
        where = self.path / ENGINE_FILE
        if self.contract.to_dict() != art.contract.to_dict():
            raise ArtifactError(f"{where}: I/O contract does not match {art.path / 'model.json'} "
                                f"(styles {list(self.contract.style_names)} vs {list(art.contract.style_names)}); "
                                "rebuild the engine")
        if self.weights_sha256 != art.weights_sha256:
            raise ArtifactError(f"{where}: built from other weights than the folder's student.pt; rebuild the engine")

    def check_gpu(self, current: dict[str, str] | None) -> None:
        """A GPU engine runs only where it was built: same GPU model and compute capability."""
        if self.gpu is None:
            return
        if current is None:
            raise ArtifactError(f"{self.path}: a {self.backend} engine needs a CUDA GPU ({self.gpu['name']}); "
                                "none is visible")
        if current.get("capability") != self.gpu.get("capability") or current.get("name") != self.gpu.get("name"):
            raise ArtifactError(
                f"{self.path}: built for {self.gpu.get('name')} (compute {self.gpu.get('capability')}), this GPU is "
                f"{current.get('name')} (compute {current.get('capability')}); rebuild with python -m engines build")


def read_engine(path: str | Path) -> EngineSpec:
    """Parse DIR/engine.json; every problem is one ArtifactError line."""
    p = Path(path)
    meta_path = p / ENGINE_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: corrupt engine metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != ENGINE_FORMAT:
        raise ArtifactError(f"{meta_path}: not a {ENGINE_FORMAT} file")
    if meta.get("format_version", 0) > ENGINE_FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: format version {meta.get('format_version')} is newer than this program")
    try:
        backend, precision = str(meta["backend"]), str(meta["precision"])
        spec = EngineSpec(
            path=p, backend=backend, precision=precision, file=str(meta["file"]),
            file_sha256=str(meta["file_sha256"]), size=(int(meta["size"][0]), int(meta["size"][1])),
            profile=meta.get("profile"), contract=IOContract.from_dict(meta["contract"]),
            weights_sha256=str(meta["weights_sha256"]), versions=dict(meta.get("versions", {})),
            gpu=meta.get("gpu"), cache_key=str(meta["cache_key"]), meta=meta,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ArtifactError(f"{meta_path}: incomplete engine metadata ({exc})") from exc
    if backend not in REGISTRY or precision not in REGISTRY[backend].precisions:
        raise ArtifactError(f"{meta_path}: unknown back-end {backend!r} / precision {precision!r}")
    if Path(spec.file).name != spec.file:
        raise ArtifactError(f"{meta_path}: file must name a file inside the engine folder, not {spec.file!r}")
    if cache_key(meta) != spec.cache_key:
        raise ArtifactError(f"{meta_path}: cache key does not match its fields (edited by hand?); rebuild the engine")
    return spec


def write_engine(out: Path, meta: dict[str, Any]) -> None:
    """Write engine.json last and atomically, so a half-finished build never looks complete."""
    tmp = out / (ENGINE_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, out / ENGINE_FILE)
