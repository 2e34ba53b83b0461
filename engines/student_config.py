"""The student network's stored configuration, apart from the network so that reading a model folder
(engines/artifact.py) needs no torch: serving runs the ONNX files on OpenVINO or ONNX Runtime."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StudentConfig:
    num_styles: int
    enc_channels: int = 32  # at 1/4 resolution
    body_channels: int = 64  # at 1/8 resolution
    half_channels: int = 16  # at 1/2 resolution
    expansion: int = 2
    blocks: int = 6
    # Residual blocks at 1/2 resolution, each with its own FiLM: where fine per-style texture can be drawn.
    # 0 is the foundation's layout; with none, a student distilled from a textured teacher learned its
    # palettes only (docs/training.md).
    half_blocks: int = 0
    # "residual": the input plus a 1/2-resolution residual (the foundation's layout). It can tint and texture
    # but never flatten a region, draw a line or change a local colour, so every style looked like the photo.
    # "paint": the network draws the whole frame. Strength is a trained identity style (one more FiLM row),
    # so 0.5 is a halfway look, not a cross-fade; a full-resolution head sees the input's pixels, so lines
    # and edges stay sharp although the body runs at 1/8 resolution.
    output: str = "residual"
    detail_channels: int = 8  # paint: features carried from 1/2 to full resolution
    head_channels: int = 8  # paint: hidden width of the full-resolution head
    # paint: frames are edge-padded by this many pixels inside the network and cropped back. A painting net
    # drew dark bands along the frame's border, where zero padding tells it the edge is; the band now falls
    # in the margin that is cut off. A multiple of 8 keeps the size contract.
    pad: int = 0

    def __post_init__(self) -> None:
        if self.output not in ("residual", "paint"):
            raise ValueError(f"output must be 'residual' or 'paint', not {self.output!r}")
        if self.pad % 8 or (self.pad and not self.paint):
            raise ValueError(f"pad must be a multiple of 8, and only a painting net pads (got {self.pad})")

    @property
    def paint(self) -> bool:
        return self.output == "paint"

    @property
    def film_rows(self) -> int:
        """FiLM rows: one per style, plus the identity row that strength blends towards when painting."""
        return self.num_styles + (1 if self.paint else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
