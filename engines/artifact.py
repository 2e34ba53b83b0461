"""Self-describing model artifacts: a folder holding weights, ONNX and metadata.

    model.json      format, I/O contract, student config, weights hash, provenance
    student.pt      PyTorch state dict of the StudentNet
    student.onnx    the same network, exported with the contract's names
    student.int8.onnx  optional: static int8 (QDQ) of student.onnx (`python -m engines quantize`)
    student.film.npz   the FiLM table (one row per style, then the identity row) that the host mixes into
                    the graph's `film` input, stamped with the weights hash; numpy only, so serving needs no torch
    thumbs/NAME.jpg one thumbnail per style, for the web gallery
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.contract import IOContract
from engines.student_config import StudentConfig

if TYPE_CHECKING:  # torch is imported where weights are read or written: serving runs the ONNX files without it
    from engines.student import StudentNet
    from engines.style_bank import StyleBank

FORMAT = "stylizer-student"
FORMAT_VERSION = 1
META_FILE = "model.json"
WEIGHTS_FILE = "student.pt"
ONNX_FILE = "student.onnx"
INT8_ONNX_FILE = "student.int8.onnx"
FILM_FILE = "student.film.npz"
THUMBS_DIR = "thumbs"

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"


class ArtifactError(Exception):
    """A model artifact is missing, corrupt or does not match what was asked for."""


@dataclass
class Artifact:
    path: Path
    contract: IOContract
    config: StudentConfig
    weights_sha256: str
    meta: dict = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def int8_onnx_path(self) -> Path:
        return self.path / INT8_ONNX_FILE

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def thumbnail(self, style: str) -> Path | None:
        p = self.path / THUMBS_DIR / f"{style}.jpg"
        return p if p.is_file() else None

    @property
    def film_path(self) -> Path:
        return self.path / FILM_FILE

    def style_bank(self) -> StyleBank:
        """The trained styles' FiLM rows, as the host mixes them (from student.film.npz; from the weights,
        with torch, where that file is missing or stale)."""
        from engines.style_bank import StyleBank

        table = None
        if self.film_path.is_file():
            try:
                with np.load(self.film_path, allow_pickle=False) as z:
                    if str(z["weights_sha256"]) == self.weights_sha256:
                        table = np.asarray(z["table"], np.float32)
            except (OSError, ValueError, KeyError) as exc:
                raise ArtifactError(f"{self.film_path}: unreadable ({exc}); rewrite it: python -m engines "
                                    f"quantize --no-int8 {self.path}") from exc
        if table is None:
            try:
                from engines.student import film_table
            except ImportError as exc:
                raise ArtifactError(f"{self.film_path}: missing or made from other weights; rewrite it with "
                                    f"python -m engines quantize --no-int8 {self.path}") from exc
            table = film_table(self.load_student()).detach().numpy()
        s = self.contract.num_styles
        if table.shape[0] != self.config.film_rows:
            raise ArtifactError(f"{self.film_path}: {table.shape[0]} FiLM rows, the network has {self.config.film_rows}")
        return StyleBank(self.contract.style_names, table[:s], table[s] if self.config.paint else None)

    def load_student(self) -> StudentNet:
        """Rebuild the network from the stored config and load (hash-checked) weights (needs torch)."""
        import torch

        from engines.student import StudentNet

        raw = self.weights_path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != self.weights_sha256:
            raise ArtifactError(f"{self.weights_path}: weights hash does not match {META_FILE} (corrupt or edited)")
        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ArtifactError(f"{self.weights_path}: cannot read weights ({exc})") from exc
        net = StudentNet(self.config)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ArtifactError(f"{self.weights_path}: weights do not fit the stored config") from exc
        return net.eval()


def write_film_table(net: StudentNet, out_dir: str | Path, weights_sha256: str) -> Path:
    """Write `net`'s FiLM table as student.film.npz (atomically), stamped with its weights hash."""
    from engines.student import film_table

    path = Path(out_dir) / FILM_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, table=film_table(net).detach().cpu().numpy().astype(np.float32),
             weights_sha256=np.array(weights_sha256))
    tmp.replace(path)
    return path


def save_artifact(net: StudentNet, contract: IOContract, out_dir: str | Path, *, provenance: dict | None = None,
                  export_onnx: bool = True) -> Artifact:
    """Write weights, metadata, the FiLM table and (optionally) ONNX for `net` into `out_dir`."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if contract.num_styles != net.config.num_styles:
        raise ArtifactError(f"contract has {contract.num_styles} styles, network {net.config.num_styles}")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    raw = buf.getvalue()
    (out / WEIGHTS_FILE).write_bytes(raw)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "contract": contract.to_dict(),
        "student_config": net.config.to_dict(),
        "weights_sha256": hashlib.sha256(raw).hexdigest(),
        "torch_version": torch.__version__,
        "provenance": provenance or {},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    art = load_artifact(out)
    write_film_table(net, out, art.weights_sha256)
    if export_onnx:
        from engines.onnx_export import export_onnx

        export_onnx(net, contract, out / ONNX_FILE, weights_sha256=art.weights_sha256)
    return art


def load_artifact(path: str | Path | None = None) -> Artifact:
    """Read an artifact folder (or its model.json). None means the bundled default model."""
    p = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if p.is_file() and p.name == META_FILE:
        p = p.parent
    if not p.exists():
        raise ArtifactError(f"{p}: no such model (expected a folder with {META_FILE})")
    if not p.is_dir():
        raise ArtifactError(f"{p}: not a model folder (expected a folder with {META_FILE})")
    meta_path = p / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"{p}: missing {META_FILE}; not a stylizer model folder")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: corrupt metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: not a {FORMAT} artifact")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: format version {meta.get('format_version')} is newer than this program")
    try:
        contract = IOContract.from_dict(meta["contract"])
        config = StudentConfig.from_dict(meta["student_config"])
        sha = str(meta["weights_sha256"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{meta_path}: incomplete metadata ({exc})") from exc
    if contract.num_styles != config.num_styles or contract.num_styles == 0:
        raise ArtifactError(f"{meta_path}: contract and network disagree on the number of styles")
    return Artifact(path=p, contract=contract, config=config, weights_sha256=sha, meta=meta)
