"""The user's style library on disk: one folder per fitted style. numpy and Pillow only (no torch).

    DIR/NAME/manifest.json       name, created, the references and their weights, the vectors
    DIR/NAME/ref1.jpg ...        the references, downscaled copies (long side REF_LONG_SIDE)
    DIR/NAME/thumb.jpg           the gallery thumbnail, made from the references
    DIR/NAME/vectors/SHA16.npy   the style's FiLM row for each model, by the model's weights hash

Writes are atomic: a new style is built in DIR/.tmp-* and renamed into place, a new vector or
manifest is written beside its target and replaced over it; a crash leaves no half style (stray
.tmp-* folders are removed when the library is opened). A vector is only ever used with the
model whose weights hash it carries; a style without one for the running model is "stale" and is
refitted from its references (or refused, with a message naming the fix).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

MAX_PICTURES = 3
MAX_BYTES = 10 * 1024 * 1024  # per picture
MAX_PIXELS = 40_000_000  # a bigger picture is refused as a decompression bomb
REF_LONG_SIDE = 768
THUMB_SIZE = 160
MANIFEST = "manifest.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class StyleError(ValueError):
    """Bad input for a style (name, picture, weights): the message says what and why."""


class StyleConflict(StyleError):
    """The name is taken."""


class StyleNotFound(StyleError):
    """No style of that name."""


class StorageFull(StyleError):
    """The disk (or the process's file size limit) is full; nothing was written."""


def default_dir() -> Path:
    """$XDG_DATA_HOME/stylizer/styles, else ~/.local/share/stylizer/styles."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stylizer" / "styles"


def check_name(name: str, taken: tuple[str, ...] | list[str] = ()) -> str:
    """A style name: 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit; not taken."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StyleError(f"style name {name!r} is not allowed: use 1-32 lowercase letters, digits, '-' or '_', "
                         f"starting with a letter or digit")
    if name in taken:
        raise StyleConflict(f"a style named {name!r} already exists; pick another name or delete it first")
    return name


def read_picture(data: bytes, label: str = "picture") -> np.ndarray:
    """Bytes of a JPEG/PNG/WebP/... -> RGB uint8 (H, W, 3); StyleError for anything else, with the reason."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_BYTES:
        raise StyleError(f"{label}: {len(data) / 1e6:.1f} MB is over the {MAX_BYTES // (1024 * 1024)} MB limit")
    if not data:
        raise StyleError(f"{label}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise StyleError(f"{label}: {w}x{h} pixels is over the {MAX_PIXELS // 1_000_000} MP limit "
                                 f"(a decompression bomb?)")
            img.load()  # a truncated or corrupt file fails here, not later
            rgb = np.asarray(img.convert("RGB"))
    except StyleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise StyleError(f"{label}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise StyleError(f"{label}: not a picture Pillow can read (JPEG, PNG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise StyleError(f"{label}: truncated or corrupt picture ({exc})") from None
    if min(rgb.shape[:2]) < 32:
        raise StyleError(f"{label}: {rgb.shape[1]}x{rgb.shape[0]} is too small (at least 32 px a side)")
    return rgb


def check_weights(weights: list[float] | None, count: int) -> list[float]:
    if not 1 <= count <= MAX_PICTURES:
        raise StyleError(f"a style takes 1 to {MAX_PICTURES} pictures, got {count}")
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise StyleError(f"{len(weights)} weights for {count} pictures; give one per picture")
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise StyleError("weights must be non-negative numbers, not all 0")
    return [float(w) for w in weights]


def downscale(rgb: np.ndarray, long_side: int = REF_LONG_SIDE) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale >= 1.0:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))


def thumbnail(pictures: list[np.ndarray], size: int = THUMB_SIZE) -> bytes:
    """A square JPEG: the references side by side in vertical strips."""
    from PIL import Image, ImageOps

    canvas = Image.new("RGB", (size, size))
    edges = [round(i * size / len(pictures)) for i in range(len(pictures) + 1)]
    for i, rgb in enumerate(pictures):
        part = ImageOps.fit(Image.fromarray(rgb), (edges[i + 1] - edges[i], size), Image.Resampling.LANCZOS)
        canvas.paste(part, (edges[i], 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _vector_file(sha: str) -> str:
    return f"vectors/{sha[:16]}.npy"


@dataclass
class UserStyle:
    name: str
    path: Path
    manifest: dict

    @property
    def thumb(self) -> Path:
        return self.path / "thumb.jpg"

    @property
    def weights(self) -> list[float]:
        return [float(r["weight"]) for r in self.manifest["references"]]

    def pictures(self) -> list[np.ndarray]:
        from PIL import Image

        return [np.asarray(Image.open(self.path / r["file"]).convert("RGB")) for r in self.manifest["references"]]

    def vector(self, sha: str) -> np.ndarray | None:
        """This style's FiLM row for the model with weights hash `sha` (None: not fitted for it)."""
        entry = self.manifest.get("vectors", {}).get(sha)
        if entry is None:
            return None
        try:
            vec = np.load(self.path / entry["file"], allow_pickle=False)
        except (OSError, ValueError):
            return None
        return vec.astype(np.float32) if vec.ndim == 1 and np.all(np.isfinite(vec)) else None

    def describe(self, sha: str | None = None) -> dict:
        d = {"name": self.name, "created": self.manifest.get("created"),
             "references": [{"source": r.get("source"), "weight": r["weight"]} for r in self.manifest["references"]]}
        if sha is not None:
            d["fitted"] = sha in self.manifest.get("vectors", {})
            d["fit"] = self.manifest.get("vectors", {}).get(sha, {}).get("fit")
        return d


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _storage_error(exc: OSError) -> StyleError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageFull(f"no room to save the style ({os.strerror(exc.errno)}); free some disk space")
    return StyleError(f"cannot save the style: {exc.strerror or exc}")


class StyleLibrary:
    """The folder of user styles. Not thread-safe: one writer (the server's event loop, or one CLI command)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        for stray in self.root.glob(".tmp-*"):  # an interrupted write: never a style
            shutil.rmtree(stray, ignore_errors=True)

    def styles(self) -> list[UserStyle]:
        out = []
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not d.is_dir():
                continue
            try:
                manifest = json.loads((d / MANIFEST).read_text())
                if manifest.get("references") and NAME_RE.match(d.name):  # the folder's name is the style's
                    out.append(UserStyle(d.name, d, manifest))
            except (OSError, ValueError):
                continue  # not a style folder (or a damaged one): skipped, never half-loaded
        return out

    def names(self) -> list[str]:
        return [s.name for s in self.styles()]

    def get(self, name: str) -> UserStyle:
        for s in self.styles():
            if s.name == name:
                return s
        raise StyleNotFound(f"no style named {name!r}")

    def vectors(self, sha: str) -> dict[str, np.ndarray]:
        """name -> FiLM row of every style fitted for the model `sha`."""
        out = {}
        for s in self.styles():
            v = s.vector(sha)
            if v is not None:
                out[s.name] = v
        return out

    def stale(self, sha: str) -> list[str]:
        """Styles with no vector for the model `sha` (fitted for another model, or never)."""
        return [s.name for s in self.styles() if s.vector(sha) is None]

    def create(self, name: str, pictures: list[np.ndarray], weights: list[float], sources: list[str],
               sha: str, vector: np.ndarray, fit: dict, taken: tuple[str, ...] = ()) -> UserStyle:
        """Write a complete new style folder atomically."""
        check_name(name, (*taken, *self.names()))
        refs = [downscale(p) for p in pictures]
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        tmp.chmod(0o755)  # mkdtemp makes it private; a style folder is as readable as the rest
        try:
            from PIL import Image

            entries = []
            for i, (rgb, w, src) in enumerate(zip(refs, weights, sources), 1):
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, "JPEG", quality=92)
                _write_atomic(tmp / f"ref{i}.jpg", buf.getvalue())
                entries.append({"file": f"ref{i}.jpg", "weight": w, "source": src})
            _write_atomic(tmp / "thumb.jpg", thumbnail(refs))
            (tmp / "vectors").mkdir()
            buf = io.BytesIO()
            np.save(buf, np.asarray(vector, np.float32))
            _write_atomic(tmp / _vector_file(sha), buf.getvalue())
            manifest = {"name": name, "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "references": entries, "vectors": {sha: {"file": _vector_file(sha), "fit": fit}}}
            _write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
            target = self.root / name
            if target.exists():
                raise StyleConflict(f"a style named {name!r} already exists; pick another name or delete it first")
            tmp.rename(target)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _storage_error(exc) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(name)

    def add_vector(self, name: str, sha: str, vector: np.ndarray, fit: dict) -> None:
        """Store the style's row for another model (a refit), atomically."""
        style = self.get(name)
        try:
            (style.path / "vectors").mkdir(exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, np.asarray(vector, np.float32))
            _write_atomic(style.path / _vector_file(sha), buf.getvalue())
            manifest = dict(style.manifest)
            manifest["vectors"] = {**manifest.get("vectors", {}), sha: {"file": _vector_file(sha), "fit": fit}}
            _write_atomic(style.path / MANIFEST, json.dumps(manifest, indent=2).encode())
        except OSError as exc:
            raise _storage_error(exc) from None

    def remove(self, name: str) -> None:
        style = self.get(name)
        # Renamed out of the library first (atomic), then deleted: a crash leaves a .tmp-* that is swept.
        gone = self.root / f".tmp-rm-{name}"
        shutil.rmtree(gone, ignore_errors=True)
        style.path.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)

    def rename(self, name: str, new: str, taken: tuple[str, ...] = ()) -> UserStyle:
        style = self.get(name)
        check_name(new, (*taken, *self.names()))
        try:
            style.path.rename(self.root / new)  # one atomic step; the manifest's name is informative
            _write_atomic(self.root / new / MANIFEST, json.dumps(dict(style.manifest, name=new), indent=2).encode())
        except OSError as exc:
            raise _storage_error(exc) from None
        return self.get(new)
