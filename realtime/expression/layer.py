"""The expression layer of one session: captions, bubbles and stickers placed on each stylized frame.

Per frame (inference thread): feed the face tracker, refresh the busyness map
every few frames, pick places (with hysteresis), and composite cached sprites.
Rasterizing happens only when the content (or a quantized tail direction) changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from realtime.expression.faces import Box, FaceDetector, FaceTracker, load_detector
from realtime.expression.overlay import (
    BUBBLE_KINDS,
    RGBA,
    Sprite,
    bubble_body_size,
    meme_position,
    parse_color,
    render_bubble,
    render_meme,
    render_stickers,
    render_subtitle,
)
from realtime.expression.placement import BusyMap, Choice, Flag, Glider, Rect, clamp_rect, overlap

BUSY_EVERY = 5   # frames between busyness maps (cheap, but not needed every frame)
TAIL_STEP = 8    # px: tail directions are quantized so a gliding bubble is not re-rasterized every frame
STICKER_COVER_LIMIT = 0.02  # stickers covering more than this share of themselves with the caption move at once


@dataclass(frozen=True)
class Expression:
    """What to draw; part of the session's StyleState."""

    caption: str = ""
    kind: str = "meme-bottom"
    color: str = "#ffffff"
    emoji: tuple[str, ...] = ()


class ExpressionLayer:
    """Places and composites the overlays of one session (or one file). Not thread-safe: one frame at a time."""

    def __init__(self, detector: Callable[[], FaceDetector | None] = load_detector, threaded_faces: bool = True) -> None:
        self._detector = detector
        self._threaded = threaded_faces
        self._faces: FaceTracker | None = None   # made on first need: loading the cascade takes ~30 ms
        self.frame = 0
        self.busy: BusyMap | None = None
        self.caption_choice = Choice()
        self.sticker_choice = Choice()
        self.backing = Flag()
        self.caption_glide = Glider()
        self.sticker_glide = Glider()
        self.layout: dict[str, list[int]] = {}   # last placed boxes (x, y, w, h), for stats and tests
        self.sprites: list[Sprite] = []          # last placed sprites, drawn in this order (overlay-only viewers)
        self._kind: str | None = None

    @property
    def faces(self) -> FaceTracker:
        if self._faces is None:
            self._faces = FaceTracker(self._detector(), threaded=self._threaded)
        return self._faces

    def close(self) -> None:
        if self._faces is not None:
            self._faces.close()

    def draw(self, src: np.ndarray, out: np.ndarray, ex: Expression) -> None:
        """Composite ex onto out (H, W, 3) uint8 in place; src is the unstylized input (for faces)."""
        for sprite in self.place(src, out, ex):
            sprite.composite(out)

    def place(self, src: np.ndarray, stylized: np.ndarray, ex: Expression) -> list[Sprite]:
        """Where ex goes on this frame, as sprites in drawing order (also kept in `sprites` and `layout`).

        src is the unstylized input (faces are found in it), stylized the frame the overlays go on (calm places
        are found in it, before anything is drawn). Either may be RGB (H, W, 3) or grey (H, W): the device path
        hands in the input's luma plane and the previous result's."""
        h, w = stylized.shape[:2]
        wants_face = bool(ex.emoji) or (ex.kind in BUBBLE_KINDS and bool(ex.caption))
        face = self.faces.update(src) if wants_face else None
        if self.busy is None or self.busy.size != (w, h):
            self.busy = BusyMap(stylized)
        elif self.frame % BUSY_EVERY == 0:
            self.busy.refresh(stylized)
        self.frame += 1
        if ex.kind != self._kind:  # a new kind starts from its default place
            self.caption_choice, self.caption_glide, self._kind = Choice(), Glider(), ex.kind
        layout: dict[str, list[int]] = {}
        if face is not None:
            layout["face"] = list(face.rounded())
        caption_rect: Rect | None = None
        sprites: list[Sprite] = []
        if ex.caption:
            placed = self._caption(ex, w, h, face)
            if placed is not None:
                sprites.append(placed)
                caption_rect = (placed.x, placed.y, placed.width, placed.height)
                layout["caption"] = list(caption_rect)
        if ex.emoji:
            placed = self._stickers(ex.emoji, w, h, face, caption_rect)
            if placed is not None:
                sprites.append(placed)
                layout["stickers"] = [placed.x, placed.y, placed.width, placed.height]
        self.layout = layout
        self.sprites = sprites
        return sprites

    # ------------------------------------------------------------ captions

    def _caption(self, ex: Expression, w: int, h: int, face: Box | None) -> Sprite | None:
        fill: RGBA = parse_color(ex.color)
        assert self.busy is not None
        if ex.kind in ("meme-bottom", "meme-top", "meme"):
            plain = render_meme(ex.caption, w, h, fill)
            if plain is None:
                return None
            spots = {"bottom": meme_position(plain, w, h, top=False), "top": meme_position(plain, w, h, top=True)}
            if ex.kind == "meme":
                where = self.caption_choice.choose(
                    {k: self.busy.score((x, y, plain.width, plain.height)) for k, (x, y) in spots.items()})
            else:
                where = "top" if ex.kind == "meme-top" else "bottom"
            x, y = spots[where]
            busy = self.backing.update(self.busy.score((x, y, plain.width, plain.height)))
            sprite = render_meme(ex.caption, w, h, fill, backing=busy) if busy else plain
            return sprite.at(*self.caption_glide.step((x, y), snap=ex.kind != "meme"))  # type: ignore[union-attr]
        if ex.kind == "subtitle":
            probe = render_subtitle(ex.caption, w, h, fill)
            if probe is None:
                return None
            x, y = (w - probe.width) // 2, h - probe.height - max(6, round(h * 0.04))
            busy = self.backing.update(self.busy.score((x, y, probe.width, probe.height)))
            return render_subtitle(ex.caption, w, h, fill, busy=busy).at(x, y)  # type: ignore[union-attr]
        return self._bubble(ex, fill, w, h, face)

    def _bubble(self, ex: Expression, fill: RGBA, w: int, h: int, face: Box | None) -> Sprite | None:
        size = bubble_body_size(ex.caption, w, h, ex.kind, fill)
        if size is None:
            return None
        bw, bh = size
        assert self.busy is not None
        gap = round(h * 0.03)
        if face is not None:
            fx, fy, fw, fh = face.astuple()
            # Beside the head, a little above it; or above it. The tail points at the mouth side.
            spots = {
                "right": ((fx + fw + gap, fy - bh * 0.55), (fx + fw * 0.92, fy + fh * 0.62)),
                "left": ((fx - gap - bw, fy - bh * 0.55), (fx + fw * 0.08, fy + fh * 0.62)),
                "above": ((fx + fw / 2 - bw / 2, fy - bh - gap * 2.5), (fx + fw / 2, fy - gap * 0.3)),
            }
            face_rect: Rect = tuple(round(v) for v in face.astuple())  # type: ignore[assignment]
        else:
            # No face: the upper corners, tail towards where a speaker usually is (centre, lower half).
            m = round(h * 0.05)
            spots = {
                "top-right": ((w - bw - m, m), (w * 0.62, h * 0.58)),
                "top-left": ((m, m), (w * 0.38, h * 0.58)),
            }
            face_rect = (0, 0, 0, 0)
        scores = {}
        placed = {}
        for k, ((x, y), tip) in spots.items():
            cx, cy = clamp_rect(x, y, bw, bh, w, h)
            moved = abs(cx - x) + abs(cy - y)  # a spot that had to be pushed inside the frame fits worse
            scores[k] = self.busy.score((cx, cy, bw, bh)) + 0.2 * moved + 150 * overlap(face_rect, (cx, cy, bw, bh))
            placed[k] = ((cx, cy), tip)
        where = self.caption_choice.choose(scores)
        (tx, ty), tip = placed[where]
        x, y = self.caption_glide.step((tx, ty))
        rel = (int(round((tip[0] - x) / TAIL_STEP) * TAIL_STEP), int(round((tip[1] - y) / TAIL_STEP) * TAIL_STEP))
        if 0 <= rel[0] <= bw and 0 <= rel[1] <= bh:
            rel = None  # type: ignore[assignment]  # the tip is under the bubble: no tail
        made = render_bubble(ex.caption, w, h, ex.kind, rel, fill)
        if made is None:
            return None
        sprite, (ox, oy) = made
        return sprite.at(x - ox, y - oy)

    # ------------------------------------------------------------ stickers

    def _stickers(self, emoji: tuple[str, ...], w: int, h: int, face: Box | None,
                  caption: Rect | None) -> Sprite | None:
        sprite = render_stickers(emoji, h)
        if sprite is None:
            return None
        sw, sh = sprite.width, sprite.height
        assert self.busy is not None
        if face is not None:
            fx, fy, fw, fh = face.astuple()
            spots = {
                "above": (fx + fw / 2 - sw / 2, fy - sh - fh * 0.08),
                "left": (fx - sw - fw * 0.12, fy + fh * 0.2),
                "right": (fx + fw * 1.12, fy + fh * 0.2),
                "below": (fx + fw / 2 - sw / 2, fy + fh * 1.1),
            }
            face_rect: Rect | None = tuple(round(v) for v in face.astuple())  # type: ignore[assignment]
        else:
            face_rect = None
            m = round(h * 0.04)
            spots = {"top-right": (w - sw - m, m), "bottom-right": (w - sw - m, h - sh - m),
                     "top-left": (m, m), "bottom-left": (m, h - sh - m)}
        scores = {}
        placed = {}
        blocked = set()  # places that would cover the caption: the caption must stay readable
        for k, (x, y) in spots.items():
            cx, cy = clamp_rect(x, y, sw, sh, w, h)
            r = (cx, cy, sw, sh)
            covers = overlap(r, caption) if caption else 0.0
            scores[k] = (self.busy.score(r) + 0.2 * (abs(cx - x) + abs(cy - y)) + 150 * covers
                         + (150 * overlap(r, face_rect) if face_rect else 0.0))
            placed[k] = (cx, cy)
            if covers > STICKER_COVER_LIMIT:
                blocked.add(k)
        where = self.sticker_choice.choose(scores, blocked)
        x, y = self.sticker_glide.step(placed[where], snap=self.sticker_choice.forced)
        if caption and overlap((x, y, sw, sh), caption) > STICKER_COVER_LIMIT:  # its glide would cross the caption
            x, y = self.sticker_glide.step(placed[where], snap=True)
        return sprite.at(x, y)
