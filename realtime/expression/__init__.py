"""The expression layer: what is drawn over the stylized frame.

- fonts (+ fontfiles/), bidi, textshape, emoji: letters, scripts and stickers;
- textlayout, overlay: laying out captions and rendering them as sprites (meme, subtitle, bubbles, stickers);
- faces, placement: where a bubble goes (face anchoring, busy-region avoidance);
- moods: one-phrase presets (blend, strength, caption kind, emoji);
- layer: ExpressionLayer, which turns the live caption/emoji/mood state into one frame's sprites.

It imports nothing from the live service or the file path.
"""
