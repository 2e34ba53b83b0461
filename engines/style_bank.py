"""The host's table of FiLM rows: the model's trained styles, then any fitted later, then the identity row.

The painting graph takes one mixed FiLM vector per frame (engines/student.py `mix_film`);
this module does that mixing in numpy, so every back-end (OpenVINO, ONNX Runtime, TensorRT,
torch) runs a style fitted after export without a rebuild: a new style is one more row here.

A bank is immutable; adding or removing a user style makes a new one, which a back-end swaps
in with one assignment, so a frame being stylized never sees half a change.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class StyleBank:
    """Named FiLM rows (R, F) plus, for a painting net, the identity row that strength blends towards."""

    def __init__(self, names: tuple[str, ...], rows: np.ndarray, identity: np.ndarray | None,
                 num_trained: int | None = None) -> None:
        if rows.ndim != 2 or rows.shape[0] != len(names):
            raise ValueError(f"{len(names)} style names for a FiLM table of shape {rows.shape}")
        if len(set(names)) != len(names):
            raise ValueError("style names must be unique")
        self.names = tuple(names)
        self.num_trained = len(names) if num_trained is None else num_trained
        self.identity = None if identity is None else np.asarray(identity, np.float32).reshape(1, -1)
        # The identity row last, like the network's own tables (engines/student.py film_weights).
        table = rows if self.identity is None else np.concatenate([rows, self.identity], axis=0)
        self.table = np.ascontiguousarray(table, np.float32)

    @property
    def width(self) -> int:
        """F: the length of one FiLM vector."""
        return self.table.shape[1]

    @property
    def paint(self) -> bool:
        return self.identity is not None

    def row(self, name: str) -> np.ndarray:
        return self.table[self.names.index(name)].copy()

    def with_styles(self, extra: Mapping[str, np.ndarray]) -> StyleBank:
        """The trained styles plus `extra` (name -> (F,) vector), in that order; earlier extras are dropped."""
        names = list(self.names[: self.num_trained])
        rows = [self.table[: self.num_trained]]
        for name, vec in extra.items():
            if name in names:
                raise ValueError(f"style {name!r} is already in the bank")
            v = np.asarray(vec, np.float32).reshape(1, -1)
            if v.shape[1] != self.width:
                raise ValueError(f"style {name!r} has a FiLM vector of {v.shape[1]} values, the model takes {self.width}")
            names.append(name)
            rows.append(v)
        return StyleBank(tuple(names), np.concatenate(rows, axis=0), self.identity, self.num_trained)

    def weights_vector(self, weights: Mapping[str, float] | None, *, strict: bool = True) -> np.ndarray:
        """{style name: weight} -> the (R,) normalised weight vector. Missing styles get 0; all-zero or
        empty means the first style. strict=False skips unknown names (a style deleted meanwhile)."""
        vec = np.zeros(len(self.names), np.float32)
        for name, w in (weights or {}).items():
            if name not in self.names:
                if strict:
                    raise ValueError(f"unknown style {name!r}; known: {', '.join(self.names)}")
                continue
            vec[self.names.index(name)] = float(w)
        if vec.sum() <= 0:
            vec[0] = 1.0
        return vec / vec.sum()

    def mix(self, weights: np.ndarray, strength: np.ndarray) -> np.ndarray:
        """(N, S<=R) style weights and (N, 1) strength -> the (N, F) FiLM vectors; StudentNet's film_weights.

        A vector over fewer styles than the bank holds (the trained ones only, say) weights the rest 0."""
        n, s = weights.shape
        r = len(self.names)
        if s > r or s < self.num_trained:
            raise ValueError(f"expected {self.num_trained} to {r} style weights, got {s}")
        w = np.zeros((n, r + (1 if self.paint else 0)), np.float32)
        total = np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-6))
        if self.paint:
            st = np.clip(strength, 0.0, 1.0)
            w[:, :s] = weights / total * st
            w[:, r:] = 1.0 - st
        else:
            w[:, :s] = weights / total
        return w @ self.table
