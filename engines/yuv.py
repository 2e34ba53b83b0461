"""yuv420p <-> RGB, BT.601 limited range, in torch so it runs on the GPU (and on the CPU for tests).

This is what PyAV/ffmpeg use by default for yuv420p <-> rgb24 (swscale's default
matrix is BT.601, limited "TV" range): Y in [16, 235], Cb/Cr in [16, 240]. Chroma is
replicated over each 2x2 block on the way in and averaged over it on the way out
(swscale uses a wider filter for the latter; on real frames the two agree within
60 dB, on pure noise they differ). Measured against PyAV on real frames:
RGB -> yuv420p ~60 dB, yuv420p -> RGB ~46 dB (swscale's fast fixed-point path
rounds differently, within 3 code values). The packed layout is PyAV's
`frame.to_ndarray(format="yuv420p")`: (H*3/2, W) = the Y plane, then U and V, each
(H/2 x W/2) laid row after row. Frames have even width and height.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from engines.backends import OverlayPatch

# RGB in [0, 1] from Y'CbCr normalised to [0, 1] / [-0.5, 0.5] (Kr = 0.299, Kb = 0.114).
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB


def check_size(height: int, width: int) -> None:
    if height % 2 or width % 2 or height < 2 or width < 2:
        raise ValueError(f"yuv420p frames need an even width and height, got {width}x{height}")


def split_planes(yuv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, H*3/2, W) packed -> Y (N, H, W), U (N, H/2, W/2), V (N, H/2, W/2): views, no copy."""
    n, rows, w = yuv.shape
    h = rows * 2 // 3
    flat = yuv.reshape(n, rows * w)
    c = (h // 2) * (w // 2)
    y = flat[:, : h * w].view(n, h, w)
    u = flat[:, h * w : h * w + c].view(n, h // 2, w // 2)
    v = flat[:, h * w + c :].view(n, h // 2, w // 2)
    return y, u, v


def yuv420p_to_rgb(yuv: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, H*3/2, W) -> float (N, 3, H, W) RGB in [0, 1] (into `out`, any float type/layout, if given)."""
    y, u, v = split_planes(yuv)
    dtype = out.dtype if out is not None else torch.float32
    dtype = torch.float32 if dtype == torch.float16 else dtype  # convert in fp32: fp16 loses a code value
    yf = (y.to(dtype) - 16.0) * (1.0 / 219.0)
    # Nearest chroma upsampling: each 2x2 block shares one Cb/Cr sample.
    uf = F.interpolate(((u.to(dtype) - 128.0) * (1.0 / 224.0))[:, None], scale_factor=2.0, mode="nearest")[:, 0]
    vf = F.interpolate(((v.to(dtype) - 128.0) * (1.0 / 224.0))[:, None], scale_factor=2.0, mode="nearest")[:, 0]
    r = yf + (2.0 * (1.0 - _KR)) * vf
    g = yf - (2.0 * (1.0 - _KB) * _KB / _KG) * uf - (2.0 * (1.0 - _KR) * _KR / _KG) * vf
    b = yf + (2.0 * (1.0 - _KB)) * uf
    rgb = torch.stack([r, g, b], dim=1).clamp_(0.0, 1.0)
    if out is None:
        return rgb
    out.copy_(rgb)
    return out


def rgb_to_yuv420p(rgb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """float (N, 3, H, W) RGB in [0, 1] -> uint8 (N, H*3/2, W) (into `out` if given)."""
    rgb = rgb.float()
    n, _, h, w = rgb.shape
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    y = _KR * r + _KG * g + _KB * b
    # Chroma from the 2x2-averaged RGB (the conversion is linear, so this equals averaging Cb/Cr).
    small = F.avg_pool2d(rgb, 2)
    ys = _KR * small[:, 0] + _KG * small[:, 1] + _KB * small[:, 2]
    u = (small[:, 2] - ys) * (0.5 / (1.0 - _KB))
    v = (small[:, 0] - ys) * (0.5 / (1.0 - _KR))
    if out is None:
        out = torch.empty((n, h * 3 // 2, w), dtype=torch.uint8, device=rgb.device)
    yo, uo, vo = split_planes(out)
    yo.copy_((y * 219.0 + 16.5).clamp_(0.0, 255.0))  # +0.5 then truncation = round half up
    uo.copy_((u * 224.0 + 128.5).clamp_(0.0, 255.0))
    vo.copy_((v * 224.0 + 128.5).clamp_(0.0, 255.0))
    return out


def composite(rgb: torch.Tensor, premult: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """In place: rgb (N, 3, H, W) in [0, 1] <- rgb * (1 - alpha) + premult; premult (3, H, W) or (N, 3, H, W)
    in [0, 1], alpha (1, H, W) or (N, 1, H, W)."""
    return rgb.mul_(1.0 - alpha).add_(premult)


def overlay_planes(patch: OverlayPatch, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A patch spread over a full frame: premultiplied (3, H, W) float32 in [0, 1] and alpha (1, H, W)."""
    premult = np.zeros((3, height, width), np.float32)
    alpha = np.zeros((1, height, width), np.float32)
    ph, pw = patch.rgb.shape[:2]
    x0, y0 = max(patch.x, 0), max(patch.y, 0)
    x1, y1 = min(patch.x + pw, width), min(patch.y + ph, height)
    if x1 > x0 and y1 > y0:
        sx, sy = x0 - patch.x, y0 - patch.y
        premult[:, y0:y1, x0:x1] = patch.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0].transpose(2, 0, 1) / 255.0
        alpha[:, y0:y1, x0:x1] = patch.alpha[sy : sy + y1 - y0, sx : sx + x1 - x0].transpose(2, 0, 1)
    return premult, alpha


# ---------------------------------------------------------------- host (numpy) versions, for CPU back-ends


def _writable(a: np.ndarray) -> np.ndarray:
    # torch.from_numpy warns on read-only arrays (e.g. PyAV's); only those are copied.
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C")


def yuv420p_to_rgb_numpy(yuv: np.ndarray) -> np.ndarray:
    """uint8 (H*3/2, W) -> RGB uint8 (H, W, 3)."""
    check_size(yuv.shape[0] * 2 // 3, yuv.shape[1])
    with torch.inference_mode():
        rgb = yuv420p_to_rgb(torch.from_numpy(_writable(yuv))[None])
        return (rgb[0] * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def rgb_to_yuv420p_numpy(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> uint8 (H*3/2, W) (into `out` if given)."""
    h, w = rgb.shape[:2]
    check_size(h, w)
    with torch.inference_mode():
        x = torch.from_numpy(_writable(rgb)).permute(2, 0, 1)[None].float() / 255.0
        dest = torch.from_numpy(out)[None] if out is not None else None
        res = rgb_to_yuv420p(x, dest)
        return out if out is not None else res[0].numpy()


def composite_numpy(rgb: np.ndarray, patch: OverlayPatch) -> None:
    """In place on RGB uint8 (H, W, 3), the same maths as the device version (rounded, not truncated)."""
    h, w = rgb.shape[:2]
    premult, alpha = overlay_planes(patch, h, w)
    res = rgb.transpose(2, 0, 1) / 255.0 * (1.0 - alpha) + premult
    rgb[...] = (res.transpose(1, 2, 0) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
