"""Control-message validation and caption rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realtime.expression.overlay import render_caption
from realtime.live.control import ControlError, parse_control

pytestmark = pytest.mark.unit

NAMES = ("vangogh", "hokusai", "lineart")


def test_valid_messages() -> None:
    u = parse_control(json.dumps({"weights": {"vangogh": 1, "hokusai": 3}, "strength": 0.5, "caption": "hi", "id": 3}), NAMES)
    assert u.weights == {"vangogh": 1.0, "hokusai": 3.0} and u.strength == 0.5 and u.caption == "hi" and u.id == 3
    assert parse_control('{"style": "lineart"}', NAMES).weights == {"lineart": 1.0}
    assert parse_control(b'{"caption": ""}', NAMES).caption == ""
    assert parse_control(json.dumps({"caption": "字" * 200}), NAMES).caption == "字" * 200


@pytest.mark.parametrize(
    "raw, reason",
    [
        ('{"colour": 1}', "unknown field"),
        ('{"strength": NaN}', "NaN"),
        ('{"strength": Infinity}', "Infinity"),
        ('{"strength": 1e999}', "finite"),
        ('{"strength": 2}', "between 0 and 1"),
        ('{"strength": true}', "number"),
        ('{"weights": {"vangogh": -1}}', ">= 0"),
        ('{"weights": {"vangogh": 0}}', "positive"),
        ('{"weights": {"picasso": 1}}', "unknown style"),
        ('{"weights": [1, 2]}', "object"),
        ('{"style": "picasso"}', "unknown style"),
        ('{"mirror": 1}', "true or false"),
        ('{"style": "vangogh", "weights": {"vangogh": 1}}', "either"),
        ('{"caption": 5}', "string"),
        (json.dumps({"caption": "x" * 201}), "too long"),
        ("[1, 2]", "JSON object"),
        ("{oops", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ('{"id": [1]}', "id"),
        ("{" + " " * 5000 + "}", "too large"),
    ],
)
def test_bad_messages_say_why(raw: str, reason: str) -> None:
    with pytest.raises(ControlError, match=reason):
        parse_control(raw, NAMES)


def _ink(sprite, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite onto mid-grey and pure white frames."""
    grey = np.full((h, w, 3), 128, np.uint8)
    white = np.full((h, w, 3), 255, np.uint8)
    sprite.composite(grey)
    sprite.composite(white)
    return grey, white


def test_caption_is_outlined_and_legible_on_any_background() -> None:
    w, h = 640, 360
    s = render_caption("Hello world", w, h)
    assert s is not None
    grey, white = _ink(s, w, h)
    band = grey[h // 2 :]
    # White fill and black outline both present, on grey ...
    assert (band.min(axis=2) > 240).mean() > 0.005
    assert (band.max(axis=2) < 20).mean() > 0.005
    # ... and the black outline still reads on white.
    assert (white[h // 2 :].max(axis=2) < 20).mean() > 0.005
    # Nothing drawn in the top half: captions sit at the bottom.
    assert (grey[: h // 3] == 128).all()


def test_cjk_and_mixed_scripts_render_real_glyphs() -> None:
    w, h = 640, 360
    # A font without CJK draws the same "tofu" box for every character: different CJK text must differ.
    a = render_caption("你好世界", w, h)
    b = render_caption("日本語です", w, h)
    assert a is not None and b is not None
    ga, _ = _ink(a, w, h)
    gb, _ = _ink(b, w, h)
    assert np.abs(ga.astype(int) - gb.astype(int)).sum() > 0
    mixed = render_caption("Hi 你好 こんにちは", w, h)
    assert mixed is not None and mixed.rgb.shape[1] > a.rgb.shape[1] * 0.5


def test_long_caption_wraps_inside_the_frame() -> None:
    w, h = 320, 180
    s = render_caption("a rather long caption that cannot fit on a single line of this small frame", w, h)
    assert s is not None
    assert s.x >= 0 and s.x + s.rgb.shape[1] <= w
    assert s.rgb.shape[0] > 2 * 0.075 * h  # more than one line tall
    assert render_caption("   \n\t  ", w, h) is None


@pytest.mark.integration
def test_mirror_flips_the_picture_and_captions_still_read() -> None:
    from engines.loader import load_backend
    from realtime.pipeline import FramePipeline, StyleState

    backend = load_backend()
    rng = np.random.default_rng(3)
    frame = np.repeat(np.repeat(rng.integers(0, 255, (18, 32, 3), np.uint8), 20, 0), 20, 1)  # 360x640 blocks
    mirrored = FramePipeline(backend, StyleState(weights={backend.style_names[0]: 1.0}, caption="Hi 你好"))
    plain = FramePipeline(backend, StyleState(weights={backend.style_names[0]: 1.0}, caption="Hi 你好"))
    assert parse_control('{"mirror": true}', backend.style_names).mirror is True
    state = mirrored.apply(parse_control('{"mirror": true}', backend.style_names))
    assert state.mirror and state.reply()["mirror"] is True
    # The same as stylizing the flipped camera frame: the picture is mirrored, the caption is not.
    assert np.array_equal(mirrored.process(frame), plain.process(np.ascontiguousarray(frame[:, ::-1])))
