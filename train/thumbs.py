"""Style thumbnails for the web gallery."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps


def write_thumbnails(paths: list[Path], names: tuple[str, ...], out_dir: Path, size: int = 160) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, p in zip(names, paths):
        img = ImageOps.fit(Image.open(p).convert("RGB"), (size, size), Image.LANCZOS)
        img.save(out_dir / f"{name}.jpg", quality=85)
