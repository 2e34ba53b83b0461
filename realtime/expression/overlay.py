"""Overlay sprites and how they are drawn: captions, subtitle bars, speech/thought bubbles, emoji stickers.

Rasterizing (Pillow) happens once per content change; per frame there is only
`Sprite.composite`: a premultiplied-alpha blend over the sprite's bounding box
(out = rgb + frame * (1 - alpha)), on the CPU with OpenCV's saturating uint8
ops, or on a torch device with `composite_torch`.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from realtime.expression.fonts import text_font_path
from realtime.expression.textlayout import TextBlock, TextStyle, clean_text, draw_block, fit

try:  # OpenCV's uint8 arithmetic is ~5x faster than numpy's for the blend; numpy is the fallback.
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

MAX_CAPTION_CHARS = 200
KINDS = ("meme-bottom", "meme-top", "meme", "subtitle", "speech", "thought")
BUBBLE_KINDS = ("speech", "thought")

font_path = text_font_path  # kept for callers of the first caption module


def clean_caption(text: str) -> str:
    """Drop what cannot be drawn and collapse whitespace (at most 4 lines)."""
    return clean_text(text)[0]


_local = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array of `shape`, this thread's, grown when a larger one is asked for (cached sprites are shared
    by sessions that run on different threads, so the scratch cannot live on the sprite)."""
    size = int(np.prod(shape))
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < size:
        buf = _local.buf = np.empty(size, np.uint8)
    return buf[:size].reshape(shape)


@dataclass(frozen=True, eq=False)
class Sprite:
    """A premultiplied RGBA patch and where it goes.

    rgb: (h, w, 3) uint8, already multiplied by alpha; alpha: (h, w, 1) float32 in [0, 1].
    Arrays are shared by every placed copy (`at`), never written after creation.
    """

    x: int
    y: int
    rgb: np.ndarray
    alpha: np.ndarray
    _inv: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]  # (h, w, 3) uint8: 255 * (1 - alpha)
    _torch: dict = field(default_factory=dict, repr=False)  # (device, layout) -> (rgb, alpha) tensors

    def __post_init__(self) -> None:
        if self._inv is None:  # built from arrays directly: derive the inverse alpha once
            inv = np.repeat(np.rint(255.0 * (1.0 - self.alpha)).astype(np.uint8), 3, axis=2)
            object.__setattr__(self, "_inv", inv)

    @staticmethod
    def from_image(img: Image.Image, x: int = 0, y: int = 0) -> Sprite:
        """From a straight-alpha RGBA Pillow image."""
        a = np.asarray(img.convert("RGBA"), np.uint16)
        alpha = a[..., 3:4]
        rgb = ((a[..., :3] * alpha + 127) // 255).astype(np.uint8)
        inv = np.repeat((255 - alpha).astype(np.uint8), 3, axis=2)
        return Sprite(x=x, y=y, rgb=rgb, alpha=alpha.astype(np.float32) / 255.0, _inv=inv)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def at(self, x: int, y: int) -> Sprite:
        """The same pixels placed at (x, y); shares the arrays."""
        return replace(self, x=int(x), y=int(y))

    def _clip(self, h: int, w: int) -> tuple[int, int, int, int, int, int] | None:
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.width, w), min(self.y + self.height, h)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1, x0 - self.x, y0 - self.y

    def composite(self, frame: np.ndarray) -> None:
        """Blend onto frame (H, W, 3) uint8 in place, over the bounding box only, clipped to the frame."""
        box = self._clip(*frame.shape[:2])
        if box is None:
            return
        x0, y0, x1, y1, sx, sy = box
        region = frame[y0:y1, x0:x1]
        c = self.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
        inv = self._inv[sy : sy + y1 - y0, sx : sx + x1 - x0]
        if cv2 is not None:
            # Through a per-thread scratch and in place: a live frame allocates nothing here.
            scratch = _scratch(region.shape)
            cv2.multiply(region, inv, dst=scratch, scale=1.0 / 255.0)
            cv2.add(scratch, c, dst=region)
        else:  # pragma: no cover
            acc = region.astype(np.uint16) * inv
            acc += 127
            acc //= 255
            region[...] = np.minimum(acc + c, 255)

    def torch_tensors(self, device: Any, layout: str) -> tuple[Any, Any]:
        """(rgb, alpha) float tensors on device, cached: 'hwc' -> (h,w,3)/(h,w,1) in 0..255, 'chw' -> (3,h,w)/(1,h,w) in 0..1."""
        import torch

        key = (str(device), layout)
        if key not in self._torch:
            rgb = torch.from_numpy(self.rgb.astype(np.float32))
            alpha = torch.from_numpy(self.alpha)
            if layout == "chw":
                rgb, alpha = rgb.permute(2, 0, 1) / 255.0, alpha.permute(2, 0, 1)
            self._torch[key] = (rgb.contiguous().to(device), alpha.contiguous().to(device))
        return self._torch[key]


def composite_torch(frame: Any, sprite: Sprite) -> None:
    """The same blend on a torch tensor, in place, on the tensor's device.

    frame: (H, W, 3) uint8 (0..255) or float (3, H, W) / (N, 3, H, W) in 0..1 (the network's output layout).
    """
    import torch

    chw = frame.dtype != torch.uint8
    h, w = (frame.shape[-2], frame.shape[-1]) if chw else (frame.shape[0], frame.shape[1])
    box = sprite._clip(h, w)
    if box is None:
        return
    x0, y0, x1, y1, sx, sy = box
    rgb, alpha = sprite.torch_tensors(frame.device, "chw" if chw else "hwc")
    if chw:
        region = frame[..., :, y0:y1, x0:x1]
        c = rgb[:, sy : sy + y1 - y0, sx : sx + x1 - x0].to(frame.dtype)
        a = alpha[:, sy : sy + y1 - y0, sx : sx + x1 - x0].to(frame.dtype)
        region.mul_(1.0 - a).add_(c)
    else:
        region = frame[y0:y1, x0:x1]
        c = rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
        a = alpha[sy : sy + y1 - y0, sx : sx + x1 - x0]
        region.copy_((region.float() * (1.0 - a) + c).round_().clamp_(0, 255).to(torch.uint8))


# ---------------------------------------------------------------- looks of each kind

RGBA = tuple[int, int, int, int]


def parse_color(value: str) -> RGBA:
    """'#rrggbb' -> (r, g, b, 255); ValueError otherwise."""
    v = value.strip().lstrip("#")
    if len(v) != 6:
        raise ValueError(f"colour must look like #rrggbb, got {value!r}")
    return (int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16), 255)


def _outline_for(fill: RGBA) -> RGBA:
    # Light fills get a black outline, dark fills a white one: contrast whatever the mood colour is.
    lum = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0, 255) if lum > 110 else (255, 255, 255, 255)


def meme_size(height: int) -> int:
    return max(14, round(height * 0.075))


@functools.lru_cache(maxsize=64)
def render_meme(text: str, width: int, height: int, fill: RGBA = (255, 255, 255, 255),
                backing: bool = False) -> Sprite | None:
    """Bold text with an outline (meme style); with a translucent dark backing when the background is busy.

    The sprite has the same size with or without backing, so switching never moves the text.
    """
    text = clean_caption(text)
    if not text:
        return None
    size = meme_size(height)
    block = fit(text, size, int(width * 0.9), int(height * 0.36))
    style = TextStyle(size=block.size, fill=fill, outline=_outline_for(fill), outline_width=max(2, block.size // 9))
    img = draw_block(block, style)
    pad = max(4, block.size // 4)
    out = Image.new("RGBA", (img.width + 2 * pad, img.height + 2 * pad), (0, 0, 0, 0))
    if backing:
        ImageDraw.Draw(out).rounded_rectangle((0, 0, out.width - 1, out.height - 1), radius=2 * pad,
                                              fill=(0, 0, 0, 120))
    out.alpha_composite(img, (pad, pad))
    return Sprite.from_image(out)


def meme_position(sprite: Sprite, width: int, height: int, top: bool) -> tuple[int, int]:
    """Centred, near the top or the bottom edge."""
    margin = max(4, round(height * 0.035))
    y = margin if top else height - sprite.height - margin
    return (width - sprite.width) // 2, max(0, y)


def render_caption(text: str, width: int, height: int) -> Sprite | None:
    """White bold text with a black outline, centred near the bottom of a (width x height) frame."""
    s = render_meme(text, width, height)
    return None if s is None else s.at(*meme_position(s, width, height, top=False))


@functools.lru_cache(maxsize=64)
def render_subtitle(text: str, width: int, height: int, fill: RGBA = (255, 255, 255, 255),
                    busy: bool = False) -> Sprite | None:
    """Smaller text on a dark translucent bar (darker when the background is busy)."""
    text = clean_caption(text)
    if not text:
        return None
    size = max(12, round(height * 0.052))
    block = fit(text, size, int(width * 0.86), int(height * 0.3))
    style = TextStyle(size=block.size, fill=fill, outline=(0, 0, 0, 255), outline_width=max(1, block.size // 16))
    img = draw_block(block, style)
    px, py = max(8, block.size // 2), max(4, block.size // 4)
    bar = Image.new("RGBA", (img.width + 2 * px, img.height + 2 * py), (0, 0, 0, 0))
    ImageDraw.Draw(bar).rounded_rectangle((0, 0, bar.width - 1, bar.height - 1), radius=max(4, block.size // 3),
                                          fill=(10, 10, 14, 200 if busy else 150))
    bar.alpha_composite(img, (px, py))
    return Sprite.from_image(bar)


@functools.lru_cache(maxsize=64)
def bubble_text(text: str, width: int, height: int, fill: RGBA) -> tuple[Image.Image, TextBlock] | None:
    """The text inside a bubble: dark on white, wrapped to about 40% of the frame width."""
    text = clean_caption(text)
    if not text:
        return None
    size = max(12, round(height * 0.055))
    block = fit(text, size, int(width * 0.38), int(height * 0.3))
    ink = fill if fill[:3] != (255, 255, 255) else (20, 20, 24, 255)
    if 0.299 * ink[0] + 0.587 * ink[1] + 0.114 * ink[2] > 150:  # too light to read on white
        ink = (20, 20, 24, 255)
    return draw_block(block, TextStyle(size=block.size, fill=ink, outline_width=0)), block


def bubble_body_size(text: str, width: int, height: int, kind: str, fill: RGBA = (255, 255, 255, 255)) -> tuple[int, int] | None:
    """(w, h) of the bubble body (without tail) for layout, or None for empty text."""
    t = bubble_text(text, width, height, fill)
    if t is None:
        return None
    img, block = t
    px = round(block.size * (1.0 if kind == "speech" else 1.4))
    py = round(block.size * (0.55 if kind == "speech" else 0.9))
    return img.width + 2 * px, img.height + 2 * py


SS = 2  # shapes are drawn at 2x and downsampled: Pillow's shapes have no anti-aliasing


@functools.lru_cache(maxsize=64)
def render_bubble(text: str, width: int, height: int, kind: str, tip: tuple[int, int] | None,
                  fill: RGBA = (255, 255, 255, 255)) -> tuple[Sprite, tuple[int, int]] | None:
    """A speech or thought bubble whose tail points at `tip` (relative to the body's top-left; None: no tail).

    Returns the sprite and the body's offset inside it (the tail may stick out left or above).
    """
    t = bubble_text(text, width, height, fill)
    size_wh = bubble_body_size(text, width, height, kind, fill)
    if t is None or size_wh is None:
        return None
    img, block = t
    bw, bh = size_wh
    border = max(2, round(height * 0.005))
    margin = border + 2
    tx, ty = tip if tip is not None else (bw // 2, bh // 2)
    ox, oy = margin + max(0, -tx), margin + max(0, -ty)  # body offset inside the canvas
    cw = ox + max(bw, tx) + margin
    ch = oy + max(bh, ty) + margin
    shapes = Image.new("RGBA", (cw * SS, ch * SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(shapes)
    body = (ox * SS, oy * SS, (ox + bw) * SS, (oy + bh) * SS)
    ink, paper = (20, 20, 24, 255), (255, 255, 255, 255)
    b = border * SS
    parts: list[tuple[str, tuple[float, ...]]] = []
    if kind == "speech":
        parts.append(("rrect", body))
        if tip is not None:
            parts.append(("poly", _tail(body, ((ox + tx) * SS, (oy + ty) * SS))))
    else:
        parts.extend(("ellipse", c) for c in _cloud(body))
        if tip is not None:
            parts.extend(("ellipse", c) for c in _thought_dots(body, ((ox + tx) * SS, (oy + ty) * SS), bh * SS))
    # Two passes: every shape grown by the border in ink, then every shape in paper on top,
    # so the tail joins the body without a line across it.
    for colour, grow in ((ink, b), (paper, 0)):
        for shape, xy in parts:
            if shape == "rrect":
                r = min(xy[2] - xy[0], xy[3] - xy[1]) * 0.45
                d.rounded_rectangle((xy[0] - grow, xy[1] - grow, xy[2] + grow, xy[3] + grow), radius=r + grow, fill=colour)
            elif shape == "ellipse":
                d.ellipse((xy[0] - grow, xy[1] - grow, xy[2] + grow, xy[3] + grow), fill=colour)
            else:
                d.polygon(list(zip(xy[0::2], xy[1::2])), fill=colour, outline=colour, width=max(1, 2 * grow))
    out = shapes.resize((cw, ch), Image.Resampling.LANCZOS)
    out.alpha_composite(img, (ox + (bw - img.width) // 2, oy + (bh - img.height) // 2))
    return Sprite.from_image(out), (ox, oy)


def _tail(body: tuple[float, float, float, float], tip: tuple[float, float]) -> tuple[float, ...]:
    """A triangle from inside the body towards tip, its base on the body's inner part."""
    x0, y0, x1, y1 = body
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Base centre: the body point nearest the tip, pulled inside so the base is hidden by the body fill.
    bx = min(max(tip[0], x0 + (x1 - x0) * 0.25), x1 - (x1 - x0) * 0.25)
    by = min(max(tip[1], y0 + (y1 - y0) * 0.3), y1 - (y1 - y0) * 0.3)
    bx, by = (bx + cx) / 2, (by + cy) / 2
    dx, dy = tip[0] - bx, tip[1] - by
    n = math.hypot(dx, dy) or 1.0
    half = min((x1 - x0) * 0.12, (y1 - y0) * 0.28)
    px, py = -dy / n * half, dx / n * half
    return (bx + px, by + py, tip[0], tip[1], bx - px, by - py)


def _cloud(body: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """Overlapping circles along an ellipse, plus a filled core: a cloud."""
    x0, y0, x1, y1 = body
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    r = min(rx, ry) * 0.42
    n = max(8, int(2 * math.pi * math.hypot(rx, ry) / 1.41 / (1.5 * r)))
    out = [(cx - rx + r * 0.6, cy - ry + r * 0.6, cx + rx - r * 0.6, cy + ry - r * 0.6)]
    for k in range(n):
        t = 2 * math.pi * k / n
        px, py = cx + (rx - r * 0.8) * math.cos(t), cy + (ry - r * 0.8) * math.sin(t)
        rr = r * (1.0 if k % 2 else 0.85)
        out.append((px - rr, py - rr, px + rr, py + rr))
    return out


def _thought_dots(body: tuple[float, float, float, float], tip: tuple[float, float], bh: float) -> list[tuple[float, ...]]:
    """Three shrinking circles from the cloud towards the tip."""
    x0, y0, x1, y1 = body
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Start at the cloud's edge on the line centre -> tip.
    dx, dy = tip[0] - cx, tip[1] - cy
    rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
    k = 1.0 / max(1e-6, math.hypot(dx / rx, dy / ry))
    sx, sy = cx + dx * k, cy + dy * k
    out = []
    for f, rad in ((0.25, 0.13), (0.58, 0.09), (0.88, 0.06)):
        px, py = sx + (tip[0] - sx) * f, sy + (tip[1] - sy) * f
        r = bh * rad
        out.append((px - r, py - r, px + r, py + r))
    return out


@functools.lru_cache(maxsize=32)
def render_stickers(emojis: tuple[str, ...], height: int) -> Sprite | None:
    """A row of colour emoji with a white halo, about 11% of the frame height each."""
    if not emojis:
        return None
    size = max(14, round(height * 0.1))
    block = fit(" ".join(emojis), size, 10**6, 10**6)
    img = draw_block(block, TextStyle(size=size, outline=(255, 255, 255, 255), outline_width=max(2, size // 14)))
    return Sprite.from_image(img)
