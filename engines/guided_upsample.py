"""Run the network at a reduced internal resolution and bring its output back to the frame's size along the
frame's own edges (fast guided-filter upsampling, He and Sun 2015).

At low resolution a local linear map from the input's luma to the output's colour is fitted in small windows;
its coefficients are smooth, so they upsample bilinearly without harm, and applying them to the full-size input
keeps its edges sharp where a plain bilinear upsample of the output would blur them. Strokes finer than a
window are lost: this is the speed end of the look/speed frontier (docs/training.md).
"""

from __future__ import annotations

import cv2
import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_upsample(low_in: np.ndarray, low_out: np.ndarray, full_in: np.ndarray, radius: int = 1,
                    eps: float = 1e-4) -> np.ndarray:
    """RGB uint8 low-resolution input and output, and the full-size input -> the full-size output (uint8).

    A 3x3 window and a small eps: wider windows or a larger eps averaged the painted strokes into a blur."""
    h, w = full_in.shape[:2]
    guide = low_in.astype(np.float32) @ (_LUMA / 255.0)
    out = low_out.astype(np.float32) * np.float32(1.0 / 255.0)
    mean_g = _box(guide, radius)
    var_g = _box(guide * guide, radius) - mean_g * mean_g
    mean_o = _box(out, radius)
    cov = _box(out * guide[..., None], radius) - mean_o * mean_g[..., None]
    a = cov / (var_g[..., None] + np.float32(eps))
    b = mean_o - a * mean_g[..., None]
    # Smooth the coefficients once more (the "mean of a and b" step), then bring them to full size.
    a = cv2.resize(_box(a, radius), (w, h), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(_box(b, radius), (w, h), interpolation=cv2.INTER_LINEAR)
    full_guide = full_in.astype(np.float32) @ _LUMA
    res = a * full_guide[..., None] + b * np.float32(255.0)
    return np.clip(res + np.float32(0.5), 0, 255).astype(np.uint8)
