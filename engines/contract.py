"""The one written I/O contract of the student network.

Every place that feeds or reads the student (training, ONNX export, the
back-ends, the live service) uses these names and this layout.

    image          float32 (N, 3, H, W)  RGB in [0, 1]; H and W multiples of SIZE_MULTIPLE
    film           float32 (N, F)        the mixed FiLM vector: the style blend's per-channel scale and
                                         shift for every FiLM layer, mixed on the host from the model's
                                         table (engines/style_bank.py) so fitted styles need no rebuild
    strength       float32 (N, 1)        0 = the input unchanged, 1 = fully stylized (also mixed into
                                         `film`: a painting net blends towards its identity row)

Callers of a Backend still speak in style weights (N, S), one non-negative weight per style,
normalised to sum to 1; the back-end turns them into `film`.
    stylized       float32 (N, 3, H, W)  RGB in [0, 1]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

INPUT_IMAGE = "image"
INPUT_FILM = "film"
INPUT_WEIGHTS = "style_weights"  # the graph input before FiLM mixing moved to the host (graph "fused-1")
INPUT_STRENGTH = "strength"
OUTPUT_IMAGE = "stylized"
LAYOUT = "NCHW"
COLOR = "RGB"
VALUE_RANGE = (0.0, 1.0)
# The student downsamples by 8 with pixel-unshuffle, so sizes must divide by 8.
SIZE_MULTIPLE = 8


@dataclass(frozen=True)
class IOContract:
    """What a model artifact promises about its tensors; stored inside every artifact."""

    style_names: tuple[str, ...]
    layout: str = LAYOUT
    color: str = COLOR
    dtype: str = "float32"
    value_range: tuple[float, float] = VALUE_RANGE
    size_multiple: int = SIZE_MULTIPLE
    inputs: tuple[str, ...] = (INPUT_IMAGE, INPUT_FILM, INPUT_STRENGTH)
    outputs: tuple[str, ...] = (OUTPUT_IMAGE,)
    extra: dict = field(default_factory=dict)

    @property
    def num_styles(self) -> int:
        return len(self.style_names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IOContract:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("style_names", "value_range", "inputs", "outputs"):
            if key in known:
                known[key] = tuple(known[key])
        known.pop("inputs", None)  # the graph's inputs are the code's (engines/onnx_export.py), not the artifact's
        return cls(**known)

    def weights_vector(self, weights: dict[str, float] | None) -> np.ndarray:
        """Turn {style name: weight} into the (S,) float32 vector the network takes.

        Missing styles get 0; all-zero or empty means "the first style".
        """
        vec = np.zeros(self.num_styles, np.float32)
        for name, w in (weights or {}).items():
            if name not in self.style_names:
                raise ValueError(f"unknown style {name!r}; known: {', '.join(self.style_names)}")
            vec[self.style_names.index(name)] = float(w)
        if vec.sum() <= 0:
            vec[0] = 1.0
        return vec / vec.sum()


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """Smallest (H, W) at least as big as the input that the network accepts."""
    return (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
