"""Where the speaker's face is: OpenCV's bundled Haar cascade, run every few frames, smoothed.

Detection runs on a small grey copy of the *input* frame (faces read better
before stylization), in its own thread, so a slow detection never delays a
frame: the inference thread only submits a copy and picks up the latest result.
Between detections the box glides towards the last result (exponential
smoothing per frame), so bubbles and stickers move smoothly instead of jittering.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("realtime.faces")

DETECT_WIDTH = 240          # px: faces down to ~10% of the frame width are found (the cascade's window is 20 px)
DETECT_EVERY = 6            # frames between detections (5 per second at 30 fps)
GLIDE = 0.25                # per-frame share of the way to the target box
HOLD_S = 1.0                # a face missed for this long is let go (bubble returns to its default place)
CASCADE = "haarcascade_frontalface_alt2.xml"


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def scaled(self, k: float) -> Box:
        return Box(self.x * k, self.y * k, self.w * k, self.h * k)

    def lerp(self, other: Box, t: float) -> Box:
        return Box(*(a + (b - a) * t for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def rounded(self) -> tuple[int, int, int, int]:
        return tuple(round(v) for v in self.astuple())  # type: ignore[return-value]


class FaceDetector:
    """Haar cascade from opencv-python-headless's own data folder (OpenCV 4.x ships it)."""

    def __init__(self) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades; install opencv-python-headless<5")
        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self._cascade.empty():
            raise RuntimeError(f"could not load {CASCADE} from {cv2.data.haarcascades}")

    def grab(self, rgb: np.ndarray, store: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, float]:
        """Cheap copy for the detection thread (nearest-neighbour to 2x the detection width, ~0.1 ms)
        and the scale from that copy back to frame pixels. Runs in the inference thread. rgb may be grey.

        With `store`, the copy goes into a buffer kept there (reused while the size holds)."""
        h, w = rgb.shape[:2]
        k = min(1.0, 2 * DETECT_WIDTH / w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        picture = _reuse(store, "picture", (size[1], size[0], *rgb.shape[2:]))
        self._cv2.resize(rgb, size, dst=picture, interpolation=self._cv2.INTER_NEAREST)
        return picture, 1.0 / k

    def small_grey(self, rgb: np.ndarray, store: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, float]:
        """Downscaled (area), equalized grey copy and the scale back to rgb's pixels. Runs in the detection thread.

        With `store`, its buffers are kept there (reused while the size holds)."""
        cv2 = self._cv2
        h, w = rgb.shape[:2]
        k = min(1.0, DETECT_WIDTH / w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        small = _reuse(store, "small", (size[1], size[0], *rgb.shape[2:]))
        cv2.resize(rgb, size, dst=small, interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            grey = _reuse(store, "grey", small.shape[:2])
            small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY, dst=grey)
        equal = _reuse(store, "equal", small.shape)
        return cv2.equalizeHist(small, dst=equal), 1.0 / k

    def detect(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Faces in grey image coordinates, largest first."""
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.2, minNeighbors=4, minSize=(20, 20))
        faces = [tuple(int(v) for v in f) for f in (found if len(found) else [])]
        return sorted(faces, key=lambda f: -f[2] * f[3])  # type: ignore[misc]


def _reuse(store: dict[str, np.ndarray] | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """store[name] when it has this shape, else a new uint8 array (kept in store, if there is one)."""
    a = store.get(name) if store is not None else None
    if a is None or a.shape != shape:
        a = np.empty(shape, np.uint8)
        if store is not None:
            store[name] = a
    return a


def load_detector() -> FaceDetector | None:
    try:
        return FaceDetector()
    except Exception as exc:  # a missing cascade disables anchoring; captions still work
        log.warning("face anchoring off: %s", exc)
        return None


class FaceTracker:
    """Per-session smoothed face box in frame pixels (or None), updated from `update(rgb)` once per frame."""

    def __init__(self, detector: FaceDetector | None, every: int = DETECT_EVERY, threaded: bool = True) -> None:
        self.detector = detector
        self.every = max(1, every)
        self.frame = 0
        self.box: Box | None = None          # what overlays follow (smoothed)
        self._target: Box | None = None      # last detection
        self._seen_at = 0.0
        self.detect_ms: float = 0.0          # last detection's duration (for stats)
        self._pool = (concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
                      if threaded and detector is not None else None)
        self._pending: concurrent.futures.Future | None = None
        # Buffers reused frame after frame: the copy handed to detection (written by the inference thread only
        # while no detection is pending) and the detection's own (one detection at a time).
        self._grabbed: dict[str, np.ndarray] = {}
        self._detecting: dict[str, np.ndarray] = {}

    def _run(self, picture: np.ndarray, scale: float) -> Box | None:
        assert self.detector is not None
        t0 = time.perf_counter()
        grey, k = self.detector.small_grey(picture, self._detecting)
        scale *= k
        faces = self.detector.detect(grey)
        self.detect_ms = (time.perf_counter() - t0) * 1e3
        if not faces:
            return None
        # Prefer the face nearest the one we follow, so two people don't make the bubble hop.
        if self._target is not None and len(faces) > 1:
            t = self._target
            faces.sort(key=lambda f: abs(f[0] * scale - t.x) + abs(f[1] * scale - t.y) - f[2] * scale)
        return Box(*faces[0]).scaled(scale)

    def _accept(self, found: Box | None, now: float) -> None:
        if found is not None:
            self._target = found if self._target is None else self._target.lerp(found, 0.6)
            self._seen_at = now
        elif self._target is not None and now - self._seen_at > HOLD_S:
            self._target = None

    def update(self, rgb: np.ndarray, now: float | None = None) -> Box | None:
        """Feed the input frame; returns the smoothed face box (or None)."""
        now = time.monotonic() if now is None else now
        if self.detector is None:
            return None
        if self._pending is not None and self._pending.cancelled():  # closed before it started: nothing to take
            self._pending = None
        if self._pending is not None and self._pending.done():
            try:
                self._accept(self._pending.result(), now)
            except Exception:  # a failed detection is just a missed one
                log.exception("face detection failed")
            self._pending = None
        if self.frame % self.every == 0 and self._pending is None:
            # A copy: the frame buffer goes on to the encoder.
            picture, scale = self.detector.grab(rgb, self._grabbed)
            if self._pool is not None:
                try:
                    self._pending = self._pool.submit(self._run, picture, scale)
                except RuntimeError:  # closed while this frame was in flight (the stream ended): no new detection
                    self._pending = None
            else:
                self._accept(self._run(picture, scale), now)
        elif self._pool is None and self._target is not None and now - self._seen_at > HOLD_S:
            self._target = None
        self.frame += 1
        if self._target is None:
            self.box = None
        elif self.box is None:
            self.box = self._target
        else:
            self.box = self.box.lerp(self._target, GLIDE)
        return self.box

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
