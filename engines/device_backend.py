"""The frame path around a network that runs on a torch device (the GPU back-ends' shared half).

Per frame shape and mode, one DeviceSlot holds every buffer the path needs, allocated once:
pinned host staging in and out, device input, the network's input tensors, overlay
planes and the device output. A frame is then: copy into pinned memory, one
non-blocking upload, one CUDA graph replay (colour conversion -> pad -> network ->
overlay -> colour conversion), one non-blocking download, one synchronise. No
per-frame allocation, no colour conversion on the CPU. Overlay planes change only when a caption or sticker
moves or changes: they are merged on the device, outside the graph, from patches uploaded once each.

Modes:  "rgb"  uint8 (N, H, W, 3) in and out
        "yuv"  yuv420p uint8 (N, H*3/2, W) in and out, optional overlay (captions) composited on the device
        "raw"  float32 (N, 3, Hp, Wp) contract tensors in and out (parity tests)
        "net"  the network alone on its static input (benchmarks)
The same code runs on the CPU (device="cpu", no graphs, no pinned memory), which is how it is tested
where there is no GPU.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines import yuv as yuvconv
from engines.artifact import Artifact
from engines.backends import Backend, BackendError, OverlayPatch, Planes
from engines.contract import padded_size

MODES = ("rgb", "yuv", "raw", "net")
# Slots kept (each: its buffers and CUDA graph). A few sizes times five batch row counts; the first made goes first.
SLOT_LIMIT = 12
PATCH_CACHE = 32  # overlay patches kept on the device (a caption, its backed twin, stickers, a few sessions')

GRAPH_WARMUP = 3  # eager runs before capture: cuDNN/TensorRT pick kernels and allocate workspaces


@dataclass
class DeviceSlot:
    """Every buffer one (mode, N, H, W) needs. Owned by the back-end; reused by every frame of that shape."""

    mode: str
    n: int
    h: int
    w: int
    hp: int
    wp: int
    host_in: Any  # pinned: (N,H,W,3) u8 | (N,H*3/2,W) u8 | (N,3,Hp,Wp) f32
    dev_in: Any
    host_film: Any  # pinned (N, F) f32
    host_strength: Any  # pinned (N, 1) f32
    dev_film: Any
    dev_strength: Any
    image: Any  # (N, 3, Hp, Wp) network dtype: the network's static input
    film: Any  # (N, F) network dtype: the mixed FiLM vector
    strength: Any  # (N, 1) network dtype
    dev_out: Any  # like dev_in
    host_out: Any  # pinned, like host_in
    premult: Any = None  # (N, 3, H, W) f32 in [0, 1]; "yuv" only: each row's overlays, merged
    alpha: Any = None  # (N, 1, H, W) f32
    overlay_src: list = field(default_factory=list)  # per row: the patches now in premult/alpha, and where
    planes_in: list = field(default_factory=list)  # per row: (Y, U, V) writable views of host_in ("yuv")
    planes_out: list = field(default_factory=list)  # per row: (Y, U, V) views of host_out
    net_out: Any = None
    graph: Any = None
    extra: dict = field(default_factory=dict)  # per-slot state of a subclass (e.g. TensorRT's output)


class DeviceBackend(Backend):
    """A back-end whose network runs on a torch device; subclasses supply `_network`."""

    channels_last = True  # the network input's memory format (TensorRT wants plain NCHW)
    frames_on_device = True

    def __init__(self, artifact: Artifact, precision: str, device: str = "cuda", cuda_graph: bool = True) -> None:
        super().__init__(artifact, precision)
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"the {self.kind} back-end needs a CUDA GPU; torch {torch.__version__} sees none")
        if precision not in ("fp16", "fp32"):
            raise BackendError(f"the {self.kind} back-end runs fp16 or fp32, not {precision}")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.device = self.dev.type
        self.use_graph = cuda_graph and self.dev.type == "cuda"
        self._slots: dict[tuple[str, int, int, int], DeviceSlot] = {}
        self._patches: dict[int, tuple[Any, Any, Any]] = {}

    # ------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _network(self, slot: DeviceSlot) -> Any:
        """Run the network on slot.image / slot.film / slot.strength; return (N, 3, Hp, Wp) in its dtype."""

    def _check_shape(self, n: int, hp: int, wp: int) -> None:
        """Refuse shapes the network cannot take (TensorRT profiles)."""

    # ------------------------------------------------------------ slots

    def _alloc(self, shape: tuple[int, ...], dtype: Any, pinned: bool = False) -> Any:
        t = self.torch
        if pinned:
            return t.zeros(shape, dtype=dtype, pin_memory=self.dev.type == "cuda")
        return t.zeros(shape, dtype=dtype, device=self.dev)

    def _slot(self, mode: str, n: int, h: int, w: int) -> DeviceSlot:
        key = (mode, n, h, w)
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        while len(self._slots) >= SLOT_LIMIT:  # sizes come and go with the clients: the oldest slot goes
            del self._slots[next(iter(self._slots))]
        t = self.torch
        if mode == "yuv":
            yuvconv.check_size(h, w)
        hp, wp = padded_size(h, w, self.contract.size_multiple)
        self._check_shape(n, hp, wp)
        io_shape, io_dtype = {
            "rgb": ((n, h, w, 3), t.uint8),
            "yuv": ((n, h * 3 // 2, w), t.uint8),
            "raw": ((n, 3, hp, wp), t.float32),
            "net": ((1,), t.uint8),
        }[mode]
        s = self.film_width
        image = self._alloc((n, 3, hp, wp), self.dtype)
        if self.channels_last:
            image = image.contiguous(memory_format=t.channels_last)
        slot = DeviceSlot(
            mode=mode, n=n, h=h, w=w, hp=hp, wp=wp,
            host_in=self._alloc(io_shape, io_dtype, pinned=True), dev_in=self._alloc(io_shape, io_dtype),
            host_film=self._alloc((n, s), t.float32, pinned=True),
            host_strength=self._alloc((n, 1), t.float32, pinned=True),
            dev_film=self._alloc((n, s), t.float32), dev_strength=self._alloc((n, 1), t.float32),
            image=image, film=self._alloc((n, s), self.dtype), strength=self._alloc((n, 1), self.dtype),
            dev_out=self._alloc(io_shape, io_dtype), host_out=self._alloc(io_shape, io_dtype, pinned=True),
        )
        slot.dev_film.copy_(self.torch.from_numpy(self._vectors(n, np.ones(len(self.style_names)), 1.0)[0]))
        slot.dev_strength.fill_(1.0)
        if mode == "yuv":
            slot.premult = self._alloc((n, 3, h, w), t.float32)
            slot.alpha = self._alloc((n, 1, h, w), t.float32)
            slot.overlay_src = [()] * n
            slot.planes_in = [yuv_planes(row) for row in slot.host_in.numpy()]
            slot.planes_out = [yuv_planes(row) for row in slot.host_out.numpy()]
        self._capture(slot)
        self._slots[key] = slot
        return slot

    def _body(self, slot: DeviceSlot) -> None:
        """Everything between upload and download, on the device. Captured into the CUDA graph."""
        t = self.torch
        h, w = slot.h, slot.w
        with t.no_grad():
            slot.film.copy_(slot.dev_film)
            slot.strength.copy_(slot.dev_strength)
            if slot.mode == "net":
                slot.net_out = self._network(slot)
                return
            img = slot.image[:, :, :h, :w]
            if slot.mode == "raw":
                slot.image.copy_(slot.dev_in)
            elif slot.mode == "rgb":
                img.copy_(slot.dev_in.permute(0, 3, 1, 2))
                img.mul_(1.0 / 255.0)
            else:
                yuvconv.yuv420p_to_rgb(slot.dev_in, out=img)
            if slot.mode != "raw":  # edge padding up to the size multiple
                if slot.hp > h:
                    slot.image[:, :, h:, :w].copy_(slot.image[:, :, h - 1 : h, :w].expand(-1, -1, slot.hp - h, -1))
                if slot.wp > w:
                    slot.image[:, :, :, w:].copy_(slot.image[:, :, :, w - 1 : w].expand(-1, -1, -1, slot.wp - w))
            y = self._network(slot)
            if slot.mode == "raw":
                slot.dev_out.copy_(y)
                return
            y = y[:, :, :h, :w].float()
            if slot.mode == "yuv":
                y = yuvconv.composite(y, slot.premult, slot.alpha)  # alpha is 0 where there is no caption
                yuvconv.rgb_to_yuv420p(y, out=slot.dev_out)
            else:
                # +0.5 then the truncating cast rounds; values are clamped first so the cast is safe.
                slot.dev_out.copy_(y.mul_(255.0).add_(0.5).clamp_(0.0, 255.0).permute(0, 2, 3, 1))

    def _capture(self, slot: DeviceSlot) -> None:
        t = self.torch
        if not self.use_graph:
            return
        stream = t.cuda.Stream(self.dev)
        stream.wait_stream(t.cuda.current_stream(self.dev))
        with t.cuda.stream(stream):
            for _ in range(GRAPH_WARMUP):
                self._body(slot)
        t.cuda.current_stream(self.dev).wait_stream(stream)
        graph = t.cuda.CUDAGraph()
        with t.cuda.graph(graph):
            self._body(slot)
        slot.graph = graph

    def _launch(self, slot: DeviceSlot) -> None:
        if slot.graph is not None:
            slot.graph.replay()
        else:
            self._body(slot)

    def _set_overlays(self, slot: DeviceSlot, row: int, patches: Sequence[OverlayPatch]) -> None:
        """Merge a row's overlay patches (drawn in order) into its planes, on the device; only when they change.

        Patches are uploaded once each (cached by their pixels' identity), so a caption that glides costs
        device work per frame, not an upload."""
        key = tuple((p.rgb, p.x, p.y) for p in patches)
        old = slot.overlay_src[row]
        if len(old) == len(key) and all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(old, key, strict=True)):
            return
        premult, alpha = slot.premult[row], slot.alpha[row]
        premult.zero_()
        alpha.zero_()
        for p in patches:
            ph, pw = p.rgb.shape[:2]
            x0, y0 = max(p.x, 0), max(p.y, 0)
            x1, y1 = min(p.x + pw, slot.w), min(p.y + ph, slot.h)
            if x1 <= x0 or y1 <= y0:
                continue
            rgb, a = self._patch_tensors(p)
            sx, sy = x0 - p.x, y0 - p.y
            c, pa = rgb[:, sy : sy + y1 - y0, sx : sx + x1 - x0], a[:, sy : sy + y1 - y0, sx : sx + x1 - x0]
            # "Over": what is below shows through where this patch is transparent.
            premult[:, y0:y1, x0:x1].mul_(1.0 - pa).add_(c)
            alpha[:, y0:y1, x0:x1].mul_(1.0 - pa).add_(pa)
        slot.overlay_src[row] = key

    def _patch_tensors(self, patch: OverlayPatch) -> tuple[Any, Any]:
        """A patch's premultiplied (3, h, w) and alpha (1, h, w) in [0, 1] on the device, cached by its pixels."""
        cache: dict[int, tuple[Any, Any, Any]] = self._patches
        hit = cache.get(id(patch.rgb))
        if hit is not None and hit[0] is patch.rgb:
            return hit[1], hit[2]
        if len(cache) >= PATCH_CACHE:
            cache.clear()
        t = self.torch
        # Converted on the device, from views of the patch's own arrays.
        rgb = t.from_numpy(patch.rgb).to(self.dev).permute(2, 0, 1).float().div_(255.0)
        a = t.from_numpy(patch.alpha).to(self.dev).permute(2, 0, 1).float()
        cache[id(patch.rgb)] = (patch.rgb, rgb, a)  # holding rgb keeps its id unique
        return cache[id(patch.rgb)][1], cache[id(patch.rgb)][2]

    def _run_slot(self, slot: DeviceSlot, film: np.ndarray, strength: np.ndarray) -> None:
        """slot.host_in (already written) -> one upload, one launch, one download into slot.host_out."""
        slot.host_film.numpy()[...] = film
        slot.host_strength.numpy()[...] = strength
        slot.dev_in.copy_(slot.host_in, non_blocking=True)
        slot.dev_film.copy_(slot.host_film, non_blocking=True)
        slot.dev_strength.copy_(slot.host_strength, non_blocking=True)
        self._launch(slot)
        slot.host_out.copy_(slot.dev_out, non_blocking=True)
        if self.dev.type == "cuda":
            self.torch.cuda.current_stream(self.dev).synchronize()

    def _roundtrip(self, slot: DeviceSlot, data: np.ndarray, film: np.ndarray, strength: np.ndarray,
                   out: np.ndarray | None) -> np.ndarray:
        """Host arrays in -> one upload, one launch, one download -> host array (into `out` if given)."""
        slot.host_in.numpy()[...] = data
        self._run_slot(slot, film, strength)
        res = out if out is not None else np.empty(slot.host_out.shape, slot.host_out.numpy().dtype)
        np.copyto(res, slot.host_out.numpy().reshape(res.shape))
        return res

    # ------------------------------------------------------------ the Backend interface

    def run(self, image: np.ndarray, film: np.ndarray, strength: np.ndarray) -> np.ndarray:
        n, _, hp, wp = image.shape
        slot = self._slot("raw", n, hp, wp)
        return self._roundtrip(slot, image, film, strength, None)

    def stylize_batch(self, frames: np.ndarray, weights: np.ndarray, strength: float | np.ndarray = 1.0,
                      out: np.ndarray | None = None) -> np.ndarray:
        self._check_frames(frames)
        n, h, w = frames.shape[:3]
        wv, sv = self._vectors(n, weights, strength)
        return self._roundtrip(self._slot("rgb", n, h, w), frames, wv, sv, out)

    def stylize_yuv420p(self, yuv: np.ndarray, weights: np.ndarray, strength: float = 1.0,
                        overlay: OverlayPatch | None = None, out: np.ndarray | None = None) -> np.ndarray:
        res = self.stylize_yuv420p_batch(yuv[None], weights, strength, overlay, None if out is None else out[None])
        return res[0]

    def stylize_yuv420p_batch(self, yuv: np.ndarray, weights: np.ndarray, strength: float | np.ndarray = 1.0,
                              overlay: OverlayPatch | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """yuv420p uint8 (N, H*3/2, W) -> (N, H*3/2, W), colour converted and captioned on the device."""
        if yuv.ndim != 3 or yuv.dtype != np.uint8 or yuv.shape[1] % 3:
            raise ValueError(f"expected yuv420p uint8 frames (N, H*3/2, W), got {yuv.dtype} {yuv.shape}")
        n, rows, w = yuv.shape
        h = rows * 2 // 3
        slot = self._slot("yuv", n, h, w)
        slot.host_in.numpy()[...] = yuv
        self.stylize_yuv_rows(n, h, w, weights, strength, [() if overlay is None else (overlay,)] * n)
        res = out if out is not None else np.empty(yuv.shape, np.uint8)
        np.copyto(res, slot.host_out.numpy())
        return res

    def yuv_rows(self, n: int, height: int, width: int) -> tuple[list[Planes], list[Planes]]:
        """The host side of a batch of N yuv420p frames: per row, the (Y, U, V) arrays to write a frame into and
        those `stylize_yuv_rows` leaves the result in. Pinned memory, reused by every batch of this shape (a
        result stays valid until the next call of the same shape)."""
        slot = self._slot("yuv", n, height, width)
        return slot.planes_in, slot.planes_out

    def stylize_yuv_rows(self, n: int, height: int, width: int, weights: np.ndarray, strength: float | np.ndarray,
                         overlays: Sequence[Sequence[OverlayPatch]]) -> None:
        """Stylize the frames written into `yuv_rows(n, height, width)[0]`: per row its own style weights (S,)
        or (N, S), strength and overlay patches; one upload, one launch, one download of the yuv420p result."""
        slot = self._slot("yuv", n, height, width)
        for row, patches in enumerate(overlays):
            self._set_overlays(slot, row, patches)
        self._run_slot(slot, *self._vectors(n, weights, strength))

    def network_step(self, n: int, height: int, width: int) -> Callable[[], None]:
        """A call that runs only the network on its static device input (graph replay where graphs are on)."""
        hp, wp = padded_size(height, width, self.contract.size_multiple)
        slot = self._slot("net", n, hp, wp)
        return lambda: self._launch(slot)

    def close(self) -> None:
        self._slots.clear()
        self._patches.clear()
        if self.dev.type == "cuda":
            self.torch.cuda.empty_cache()


def yuv_planes(packed: np.ndarray) -> Planes:
    """(H*3/2, W) packed yuv420p (as PyAV lays it out) -> Y, U, V views of the same memory."""
    rows, w = packed.shape
    h = rows * 2 // 3
    flat = packed.reshape(-1)
    q = (h // 2) * (w // 2)
    return packed[:h], flat[h * w : h * w + q].reshape(h // 2, w // 2), flat[h * w + q : h * w + 2 * q].reshape(
        h // 2, w // 2)
