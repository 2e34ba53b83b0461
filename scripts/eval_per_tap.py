"""Where a model's style distance comes from: the eval's style distance split by EfficientNet tap, per style,
with each style's edge SSIM and RGB-statistics distance. Same protocol as `python -m train eval` (held-out
photos at 384 px short side, one-hot styles at strength 1, the model's own references); no clip, so it
takes about a minute a model on two cores.

    python scripts/eval_per_tap.py MODEL [MODEL ...] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


from engines.features import ExpansionFeatures
from engines.style_losses import colour_loss, pooled_style_stats, style_loss
from train.data import held_out_images, load_rgb, to_tensor
from train.eval_metrics import load_student_or_teacher, run_stylizer, short_side
from train.metrics import edge_ssim

SIZE = 384


def report(path: str, features: ExpansionFeatures, photos: list) -> None:
    model = load_student_or_teacher(path)
    refs = [[to_tensor(load_rgb(p, SIZE, max_long=2 * SIZE)) for p in ps] for ps in model.style_refs]
    n, taps = len(model.style_names), features.taps
    eye = torch.eye(n)
    target = pooled_style_stats(features, refs).mix(eye)
    dist, edge, rgb = np.zeros((n, len(taps))), np.zeros(n), np.zeros(n)
    with torch.no_grad():
        for img in photos:
            x = to_tensor(short_side(img, SIZE))[None]
            y = run_stylizer(model, x.expand(n, -1, -1, -1), eye, torch.ones(n, 1)).float()
            feats = features(y)
            for i in range(n):
                one = target.row(i)
                mine = {k: f[i : i + 1] for k, f in feats.items()}
                dist[i] += [float(style_loss(mine, one, taps=(k,))) for k in taps]
                edge[i] += edge_ssim(x, y[i : i + 1])
                rgb[i] += float(colour_loss(y[i : i + 1], one))
    dist, edge, rgb = dist / len(photos), edge / len(photos), rgb / len(photos)
    print(f"\n{path}\n| style | " + " | ".join(f"tap {k}" for k in taps) + " | distance | edge SSIM | RGB stats |")
    print("|---|" + "---:|" * (len(taps) + 3))
    for i, name in enumerate(model.style_names):
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in dist[i]) + f" | {dist[i].mean():.4f} | {edge[i]:.3f} | {rgb[i]:.4f} |")
    print("| **mean** | " + " | ".join(f"{v:.4f}" for v in dist.mean(0)) + f" | {dist.mean():.4f} | {edge.mean():.3f} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="student folders (model.json) or teacher .pt checkpoints")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    features = ExpansionFeatures()
    photos = [im for _, im in held_out_images()]
    if not photos:
        raise SystemExit("no held-out photos: the shared data folder is missing (see README, data)")
    for path in args.models:
        report(path, features, photos)


if __name__ == "__main__":
    main()
