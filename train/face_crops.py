"""Training crops centred on faces, with the face's box as a mask.

Random crops of the content rarely hold a face at the size a webcam shows one, and a painter trained on them
paints over eyes and mouths (the look table's faces-kept column). These crops put a face in every step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from train.data import to_tensor
from train.look import face_boxes
from train.teacher_losses import luma


class FaceCrops:
    """Square crops of `size` px around the faces found in `images`; the face fills `fill` (a range) of the
    crop side: 30-60% by default, up to 90% for a face as near as a webcam's (kodim04's face is 200 px of a
    360 px frame).

    With `sources` (content_images' names: a clip's frames are "video/clip.mp4#N", a frame folder's
    "video/folder/N.jpg"), each photo and each clip is drawn as often as any other: five webcam clips held 196
    of the 212 faces in the training content, and a face term trained on them kept those faces and lost the
    small faces in busy photos."""

    def __init__(self, images: list[Image.Image], size: int, seed: int = 0,
                 fill: tuple[float, float] = (0.3, 0.6), sources: Sequence[str] | None = None) -> None:
        self.size = size
        self.fill = fill
        self.rng = random.Random(seed)
        self.faces: list[tuple[Image.Image, tuple[int, int, int, int]]] = []
        groups: dict[str, list[int]] = {}
        for i, im in enumerate(images):
            rgb = np.asarray(im)
            # The cascade works on a moderate size; boxes scale back to the image.
            k = min(1.0, 480 / min(im.size))
            small = np.asarray(im.resize((round(im.width * k), round(im.height * k)), Image.BILINEAR)) if k < 1 else rgb
            for box in face_boxes(small):
                group = _source(sources[i]) if sources is not None else str(len(self.faces))
                groups.setdefault(group, []).append(len(self.faces))
                self.faces.append((im, tuple(round(v / k) for v in box)))
        self.groups = list(groups.values())  # face indices per source; a draw picks a source, then a face

    def __len__(self) -> int:
        return len(self.faces)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, 3, size, size) crops and (batch, 1, size, size) face masks."""
        crops, masks = [], []
        for _ in range(batch):
            im, (x, y, w, h) = self.faces[self.rng.choice(self.rng.choice(self.groups))]
            scale = self.size * self.rng.uniform(*self.fill) / max(w, h)
            W, H = max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))
            sx, sy = W / im.width, H / im.height
            fx, fy, fw, fh = x * sx, y * sy, w * sx, h * sy
            # Centre on the face, jittered, inside the image.
            cx = fx + fw / 2 + self.rng.uniform(-0.2, 0.2) * self.size
            cy = fy + fh / 2 + self.rng.uniform(-0.2, 0.2) * self.size
            x0 = int(min(max(cx - self.size / 2, 0), W - self.size))
            y0 = int(min(max(cy - self.size / 2, 0), H - self.size))
            crop = im.resize((W, H), Image.BILINEAR).crop((x0, y0, x0 + self.size, y0 + self.size))
            mask = torch.zeros(1, self.size, self.size)
            bx0, by0 = max(0, round(fx - x0)), max(0, round(fy - y0))
            mask[:, by0 : max(by0, round(fy + fh - y0)), bx0 : max(bx0, round(fx + fw - x0))] = 1.0
            if self.rng.random() < 0.5:
                crop, mask = crop.transpose(Image.FLIP_LEFT_RIGHT), mask.flip(-1)
            crops.append(to_tensor(crop))
            masks.append(mask)
        return torch.stack(crops), torch.stack(masks)


def _source(name: str) -> str:
    """The photo or clip a content image came from."""
    name = name.partition("#")[0]
    return "/".join(name.split("/")[:2]) if name.startswith("video/") else name


def face_structure_loss(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, pool: int = 4,
                        cells: int = 0) -> torch.Tensor:
    """How far the output's coarse light and dark pattern inside the face box is from the input's, each
    normalised to zero mean and unit spread there: eyes, brows, nose and mouth are what a viewer (and a face
    detector) reads a face by, and this keeps them while leaving the palette and the fine strokes free.

    The pattern is read in `pool` px blocks, or, with `cells`, in blocks of 1/cells of the face's side: a
    Haar cascade reads a near face at its own scale, where blotches of 10-20 px break what 4 px blocks hold
    (on a 200 px face the input's coarse luma under the output's strokes is found again; the reverse is not)."""
    total = y.new_zeros(())
    for i in range(y.shape[0]):
        k = max(pool, round(float(mask[i].sum()) ** 0.5 / cells)) if cells else pool
        ly = torch.nn.functional.avg_pool2d(luma(y[i : i + 1]), k)
        lx = torch.nn.functional.avg_pool2d(luma(x[i : i + 1]), k)
        sel = torch.nn.functional.avg_pool2d(mask[i : i + 1], k) > 0.5
        if int(sel.sum()) < 16:
            continue
        a, b = ly[sel], lx[sel]
        a = (a - a.mean()) / (a.std() + 1e-3)
        b = (b - b.mean()) / (b.std() + 1e-3)
        total = total + (a - b).pow(2).mean()
    return total / y.shape[0]
