#!/usr/bin/env bash
# The exact commands that produced the bundled model in engines/models/default: the painting student P28, trained
# straight from the bank's references with perceptual, image-space distribution, stability, face, line and flat-fill
# losses and a patch critic (docs/training.md, "The look"), then distilled from the painting teacher T2 (grown from
# P19, step 13) by a teacher term on top of those losses (step 18).
# It is a chain of runs, each starting from the previous one. Committed starts (train/students/): p3 (for step
# 5), p4 (P4 as shipped: what step 5's last block writes to runs/p4_56; for step 6), p6, p10 (steps 7, 8), p16,
# p17, p18 (steps 10-12), p19 (steps 13-15), p22 (step 17), p23 (step 18); the teacher is train/teachers/t2 (step 14). So any
# tail of the chain replays alone (step 9 starts from step 8's runs/p11; P11 is the bundled model of git history
# before 2026-12-07).
# Needs the project's staged data (shared/data beside this checkout, or STYLIZER_DATA) and the train extra.
# Only permissive data is used (never content/bsds500).
#
# Times: two runs side by side on the 2-core CPU, one thread each. Steps 1 and 2 ran with the code before two
# inference-only changes (the exact-input fade below strength 0.05, and the 16 px frame margin that step 3
# introduces), so they replay close to, not bit for bit, what was trained.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
common=(--style-weight 100 --style-margin 0.03 --content-taps 2 4 --content-weight 30 --threads 1 --save-every 200)

# 1. P1 (run C): the painting layout from scratch, perceptual statistics only (~30 min). It keeps the photo: a tint.
python -m train perceptual "${common[@]}" --steps 1400 --pad 0 --tv-weight 30 \
  --colour-dist-weight 0 --grad-dist-weight 0 --out runs/paintC

# 2. P2 (run H): the image-space distributions join (colour, and luma gradients at 1, 1/2, 1/4) (~16 min).
python -m train perceptual "${common[@]}" --init runs/paintC/model --steps 800 --pad 0 --tv-weight 30 \
  --colour-dist-weight 200 --grad-dist-weight 1000 --grad-dist-scales 1 2 4 --out runs/paintH

# 3. P3 (run R3): a 16 px frame margin, twice the TV, and the gradient term at 1/2 and 1/4 only (at full scale it
#    drew a 4 px weave) (~15 min). Its twin R4 without the stability term (same start, same batches) is what
#    the stability figures compare against. These are the command's defaults; they are spelt out here.
p3=("${common[@]}" --init runs/paintH/model --steps 600 --pad 16 --tv-weight 60
    --colour-dist-weight 200 --grad-dist-weight 1000 --grad-dist-scales 2 4)
python -m train perceptual "${p3[@]}" --out runs/paintR3
python -m train perceptual "${p3[@]}" --stable-weight 0 --out runs/paintR4

# 4. Ship with a 48 px margin: trained at 16, the network still drew dark bands along the frame's edges; at 48
#    they fall in the margin that is cut off. Same weights, a wider pad; then re-export and re-calibrate int8.
python - <<'PY'
import dataclasses, shutil
from pathlib import Path
from engines.artifact import load_artifact, save_artifact
from engines.student import StudentNet

for src, dst in (("runs/paintR3/model", "engines/models/default"), ("runs/paintR4/model", "runs/twin_p48")):
    art = load_artifact(src)
    net = StudentNet(dataclasses.replace(art.config, pad=48)).eval()
    net.load_state_dict(art.load_student().state_dict())
    shutil.rmtree(dst, ignore_errors=True)
    save_artifact(net, art.contract, dst, provenance={**art.meta["provenance"], "inference_pad": 48})
    shutil.copytree(Path(src) / "thumbs", Path(dst) / "thumbs")
PY
cp -r engines/models/default runs/p3_p48

# 5. P4: from P3 at the 48 px margin it ships with (so the bands never form), with a face-region term (Haar
#    faces on the content crop keep their coarse light/dark pattern, weight 10), a temporal term on real clip
#    pairs (DIS flow with occlusion masks, weight 200) and a stronger shift stability term (50); 500 steps,
#    ~43 min at one thread beside other jobs. Shipped with a 56 px margin: at 48 it still darkened the frame's
#    border (edge/inner luma 0.92; 0.99 at 56, 1.03 at 64, which costs 16% of the speed).
python -m train perceptual "${common[@]}" --init runs/p3_p48 --steps 500 --pad 48 --tv-weight 60 \
  --colour-dist-weight 200 --grad-dist-weight 1000 --grad-dist-scales 2 4 \
  --face-weight 10 --clip-weight 200 --stable-weight 50 --save-every 100 --out runs/p4
python - <<'PY'
import dataclasses, shutil
from engines.artifact import load_artifact, save_artifact
from engines.student import StudentNet

art = load_artifact("runs/p4/model")
net = StudentNet(dataclasses.replace(art.config, pad=56)).eval()
net.load_state_dict(art.load_student().state_dict())
shutil.rmtree("runs/p4_56", ignore_errors=True)
save_artifact(net, art.contract, "runs/p4_56", provenance={**art.meta["provenance"], "inference_pad": 56})
PY

# 6. P6: from P4, the style terms at 1.4x (style 140, colour distribution 260, gradient distribution 1,300) and
#    the face term at 15; 500 steps (~15 min at one thread). The first student over the recognisability bar.
#    runs/p4_56 is train/students/p4 (P4 as shipped, 56 px; trained on at 48): steps 6-8 replay without 1-5.
p6=("${common[@]}" --style-weight 140 --pad 48 --tv-weight 60 --colour-dist-weight 260 --grad-dist-weight 1300
    --grad-dist-scales 2 4 --clip-weight 200 --stable-weight 50 --save-every 100)
python -m train perceptual "${p6[@]}" --init runs/p4_56 --steps 500 --face-weight 15 --out runs/p6
# 7. P10: from P6 (train/students/p6), the line term on lineart (ink below luma 0.7 away from the photo's edges
#    costs, weight 50): the woodcut draws contours instead of masses; 300 steps.
line=(--line-weight 50 --line-styles lineart --line-dark 0.7)
python -m train perceptual "${p6[@]}" --init runs/p6/model --steps 300 --face-weight 15 "${line[@]}" --out runs/p10
# 8. P11: from P10 (train/students/p10), the face term at 30 with the face crop at strengths 0.4-0.8; 200 steps
#    at two threads (~5 min). It was the bundled model until 2026-12-07, shipped with the 56 px margin, as P4.
python -m train perceptual "${p6[@]}" --init runs/p10/model --steps 200 --threads 2 --face-weight 30 \
  --face-strengths 0.4 0.8 "${line[@]}" --out runs/p11
# 9. P16: from P11, the halfway term (below full strength the photo's 16 px light and dark layout holds, in
#    proportion to 1 - strength) at 300; 500 steps at two threads (~10 min each, as are steps 10-12).
python -m train perceptual "${p6[@]}" --init runs/p11/model --steps 500 --threads 2 --face-weight 30 \
  --face-strengths 0.4 0.8 "${line[@]}" --halfway-weight 300 --out runs/p16
# 10. P17: from P16 (train/students/p16), the softened Haar cascade on the face crop (weight 3), the face crop
#     at strengths 0.5-1.0 and three times as often in lineart and cartoon, the styles that lost faces.
face=(--face-weight 30 --face-strengths 0.5 1.0 --halfway-weight 300)
python -m train perceptual "${p6[@]}" --init runs/p16/model --steps 500 --threads 2 "${face[@]}" "${line[@]}" \
  --cascade-weight 3 --face-style-odds lineart=3 cartoon=3 --out runs/p17
# 11. P18: from P17 (train/students/p17), face crops drawn per photo or clip, not per face (five webcam clips held
#     196 of the 212 faces), faces filling 20-60% of the crop, the cascade at 5.
python -m train perceptual "${p6[@]}" --init runs/p17/model --steps 500 --threads 2 "${face[@]}" "${line[@]}" \
  --cascade-weight 5 --face-style-odds lineart=3 cartoon=3 --face-by-source --face-fill 0.2 0.6 --out runs/p18
# 12. P19 (the bundled model): from P18 (train/students/p18), the cascade back at 2, the face crop's line styles
#     at 4x, and the distribution terms at colour 300 and gradient 1,500, which won back the gain P18 gave up.
p19=("${common[@]}" --style-weight 140 --pad 48 --tv-weight 60 --colour-dist-weight 300 --grad-dist-weight 1500
     --grad-dist-scales 2 4 --clip-weight 200 --stable-weight 50 --save-every 100)
python -m train perceptual "${p19[@]}" --init runs/p18/model --steps 500 --threads 2 "${face[@]}" "${line[@]}" \
  --cascade-weight 2 --face-style-odds lineart=4 cartoon=4 --face-by-source --face-fill 0.2 0.6 --out runs/p19
# 13. The painting teacher T2: P19 grown 16x in MACs (train/grow.py: 64/256/64 channels, expansion 4, ten blocks at
#     1/8 and four at 1/2, head 16/32; it starts painting exactly P19's frames), trained 300 steps with P19's terms
#     plus the two-scale patch critic (weight 5 from step 30), the line term on cartoon too, and flat fills off
#     the photo's edges for lineart and cartoon (train/line_losses.py, weight 300). ~24 min on both cores.
#     Its folder and critic are committed as train/teachers/t2 (model + critic.pt) for step 14.
python -m train perceptual "${p19[@]}" --init train/students/p19 --steps 300 --threads 2 --lr 5e-4 --save-every 50 \
  "${face[@]}" --line-weight 50 --line-styles lineart cartoon --line-dark 0.7 --flat-weight 300 \
  --cascade-weight 2 --face-style-odds lineart=4 cartoon=4 --face-by-source --face-fill 0.2 0.6 \
  --enc-channels 64 --body-channels 256 --half-channels 64 --expansion 4 --blocks 10 --half-blocks 4 \
  --detail-channels 16 --head-channels 32 --adv-weight 5 --adv-start 30 --out runs/t2
# 14. The students, distilled from T2 (train/presets/distill_paint.toml; its critic starts from T2's): L, P19's
#     layout from P19, with the no-temporal twin from P3's twin (~17 min); then M (three blocks at 1/8, one at
#     1/2) and S (one block at 1/8, none at 1/2) in one run on the same batches and labels.
python -m train distill --teacher runs/t2/model --preset distill_paint --set steps=300 --set 'out="runs/dL"'
#     L kept T2's clean walls and lost the strokes (top-1 0.61, mean gain 0.35: docs/training.md), so the M/S run
#     below was stopped at step 45 and the bundled model comes from steps 15-17 instead.
python -m train distill --teacher runs/t2/model --preset distill_paint --set steps=200 --set blocks=3 \
  --set half_blocks=1 --set ablate_temporal=false --set 'sizes=["s:blocks=1,half_blocks=0"]' --set 'out="runs/dMS"'
# 15. P21: T2's recipe at the student's own size, from P19: the critic, the line term on cartoon too, flat fills
#     off the photo's edges for lineart and cartoon (300 steps, lr 1e-3, ~6.5 min).
p21=("${common[@]}" --style-weight 140 --pad 48 --tv-weight 60 --grad-dist-scales 2 4 --clip-weight 200
     --stable-weight 50 --threads 2 "${face[@]}" --line-weight 50 --line-styles lineart cartoon --line-dark 0.7
     --flat-weight 300 --adv-weight 5 --face-by-source --face-fill 0.2 0.6)
python -m train perceptual "${p21[@]}" --colour-dist-weight 300 --grad-dist-weight 1500 --cascade-weight 2 \
  --face-style-odds lineart=4 cartoon=4 --adv-start 30 --init train/students/p19 --steps 300 --lr 1e-3 \
  --save-every 100 --out runs/p21
# 16. P22: the distribution terms at colour 360 and gradient 1,800, which won back the gain (150 steps).
python -m train perceptual "${p21[@]}" --colour-dist-weight 360 --grad-dist-weight 1800 --cascade-weight 2 \
  --face-style-odds lineart=4 cartoon=4 --adv-start 20 --init runs/p21/model --steps 150 --lr 1e-3 \
  --save-every 75 --out runs/p22
# 17. P23 (the bundled model until P28): from P22 (train/students/p22), the cascade at 4 with face crops drawn in every
#     style alike (100 steps, lr 5e-4), which won back faces the flat fills had cost.
python -m train perceptual "${p21[@]}" --colour-dist-weight 360 --grad-dist-weight 1800 --cascade-weight 4 \
  --adv-start 20 --init runs/p22/model --steps 100 --lr 5e-4 --save-every 50 --out runs/p23
# 18. P28 (the bundled model): P23's recipe from P23 (train/students/p23), plus the teacher term: T2's output on the
#     same batch, style blend and strength, in 8 px block means, weight 150 (200 steps at lr 5e-4, one thread,
#     ~16 min). The same command with --blocks 3 --half-blocks 1 (or --blocks 1 --half-blocks 0) starts from P23
#     shrunk (train/shrink.py) and trains the medium and small sizes (docs/training.md, "Three distilled sizes").
python -m train perceptual "${p21[@]}" --colour-dist-weight 360 --grad-dist-weight 1800 --cascade-weight 4 \
  --adv-start 20 --init runs/p23/model --steps 200 --lr 5e-4 --save-every 50 --threads 1 \
  --teacher train/teachers/t2 --teacher-weight 150 --out runs/p28
python - <<'PY'
import dataclasses, shutil
from pathlib import Path
from engines.artifact import load_artifact, save_artifact
from engines.student import StudentNet

art = load_artifact("runs/p28/model")
net = StudentNet(dataclasses.replace(art.config, pad=56)).eval()
net.load_state_dict(art.load_student().state_dict())
readme = Path("engines/models/default/README.md").read_text()
shutil.rmtree("engines/models/default")
save_artifact(net, art.contract, "engines/models/default", provenance={**art.meta["provenance"], "inference_pad": 56})
shutil.copytree("runs/p28/model/thumbs", "engines/models/default/thumbs")
Path("engines/models/default/README.md").write_text(readme)
PY
python -m engines quantize engines/models/default
python -m train fidelity-fixture --teacher engines/models/default
