"""A frame index drawn as big black/white blocks, readable after stylization and VP8.

Layout (top-left strip): [black ref][white ref][12 bits, MSB first][parity].
Decoding thresholds each block's centre halfway between the two references,
so a style that tints or darkens the frame still reads correctly.
"""

from __future__ import annotations

import numpy as np

BITS = 12
BLOCKS = 2 + BITS + 1


def block_size(width: int) -> int:
    return max(12, width // 40)


def draw_index(img: np.ndarray, index: int) -> None:
    """Draw index (mod 4096) into img (H, W, 3) uint8, in place."""
    b = block_size(img.shape[1])
    index %= 1 << BITS
    bits = [(index >> (BITS - 1 - k)) & 1 for k in range(BITS)]
    values = [0, 1] + bits + [sum(bits) % 2]
    for k, v in enumerate(values):
        img[0:b, k * b : (k + 1) * b] = 255 if v else 0


def read_index(img: np.ndarray) -> int | None:
    """The index drawn by draw_index, or None when the code does not check out."""
    b = block_size(img.shape[1])
    if img.shape[0] < b or img.shape[1] < BLOCKS * b:
        return None
    luma = img[..., :3].astype(np.float32).mean(axis=2)
    q = b // 4
    means = [luma[q : b - q, k * b + q : (k + 1) * b - q].mean() for k in range(BLOCKS)]
    black, white = means[0], means[1]
    if white - black < 40:
        return None
    bits = [1 if m > (black + white) / 2 else 0 for m in means[2:]]
    if sum(bits[:BITS]) % 2 != bits[BITS]:
        return None
    return int("".join(map(str, bits[:BITS])), 2)
