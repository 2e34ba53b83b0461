"""The reduced-resolution path: guided upsampling keeps the frame's edges where a bilinear upsample blurs them."""

import cv2
import numpy as np
import pytest

from engines.guided_upsample import guided_upsample

pytestmark = pytest.mark.unit


def _scene(h: int = 180, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 40, np.uint8)
    img[:, w // 3 :] = 200  # a hard vertical edge on an odd pixel
    cv2.circle(img, (2 * w // 3, h // 2), 37, (90, 90, 90), -1)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_guided_upsampling_keeps_edges_that_bilinear_blurs() -> None:
    full = _scene()
    # A "style" the local linear model can hold: a per-pixel colour map of the input's light and dark.
    def paint(rgb: np.ndarray) -> np.ndarray:
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.stack([255 - luma, 0.5 * luma, 0.2 * luma + 100], -1).clip(0, 255).astype(np.uint8)

    want = paint(full).astype(np.float32)
    small = cv2.resize(full, (160, 90), interpolation=cv2.INTER_AREA)
    out_small = paint(small)
    guided = guided_upsample(small, out_small, full).astype(np.float32)
    bilinear = cv2.resize(out_small, (320, 180), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    edge = np.zeros(full.shape[:2], bool)
    edge[:, 320 // 3 - 3 : 320 // 3 + 3] = True
    err_g, err_b = np.abs(guided - want)[edge].mean(), np.abs(bilinear - want)[edge].mean()
    assert err_g < 0.5 * err_b, (err_g, err_b)
    assert np.abs(guided - want).mean() < 4.0
    # Flat regions agree to within the sensor noise either way.
    flat = np.zeros_like(edge)
    flat[10:40, 10:80] = True
    assert np.abs(guided - want)[flat].mean() < 3.0
