"""The expression layer: protocol fields, emoji, text cleaning, moods, rate limits, placement, faces, compositing."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engines.backends import Backend
from engines.loader import load_backend
from realtime.expression.emoji import EmojiError, resolve, split_runs
from realtime.expression.faces import Box, FaceTracker, load_detector
from realtime.expression.layer import STICKER_COVER_LIMIT, Expression, ExpressionLayer
from realtime.expression.moods import MoodBook, MoodError, normalise
from realtime.expression.overlay import Sprite, composite_torch, render_bubble, render_meme
from realtime.expression.placement import MIN_DWELL, SWITCH_AFTER, BusyMap, Choice, Flag, overlap
from realtime.expression.textlayout import clean_text, fit
from realtime.live.control import ControlError, parse_control
from realtime.live.ratelimit import TokenBucket
from realtime.pipeline import FramePipeline

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
NAMES = ("vangogh", "hokusai", "kandinsky", "monet", "klimt", "lineart")


# ---------------------------------------------------------------- protocol


def test_new_control_fields_are_validated() -> None:
    u = parse_control(json.dumps({"caption": {"text": "hi", "kind": "speech", "color": "#FFD23F"},
                                  "emoji": ["party", "1F525", "😴", "U+2728"], "mood": "party time"}), NAMES)
    assert (u.caption, u.caption_kind, u.caption_color) == ("hi", "speech", "#ffd23f")
    assert u.emoji == ("🎉", "🔥", "😴", "✨") and u.mood == "party time"
    assert parse_control('{"caption_kind": "thought", "emoji": []}', NAMES).emoji == ()
    assert parse_control('{"caption": "plain text"}', NAMES).caption_kind is None  # the old form still works


@pytest.mark.parametrize("msg, reason", [
    ({"caption": {"text": "x", "size": 3}}, "unknown caption field"),
    ({"caption_kind": "banner"}, "unknown caption kind"),
    ({"caption_color": "red"}, "#rrggbb"),
    ({"emoji": ["definitely-not-an-emoji"]}, "unknown emoji"),
    ({"emoji": ["FFFFF"]}, "unknown emoji"),
    ({"emoji": ["party"] * 9}, "too many emoji"),
    ({"emoji": [1]}, "list of names"),
    ({"mood": "x" * 81}, "mood too long"),
    ({"mood": 3}, "mood must be a string"),
    ({"caption": {"text": "x" * 201}}, "too long"),
])
def test_bad_expression_fields_say_why(msg: dict, reason: str) -> None:
    with pytest.raises(ControlError, match=reason):
        parse_control(json.dumps(msg), NAMES)


# ---------------------------------------------------------------- emoji and text


def test_emoji_names_codes_and_sequences() -> None:
    assert resolve("party") == resolve("party popper") == resolve(":party_popper:") == resolve("1f389") == "🎉"
    assert resolve("👍🏽") == "👍🏽" and resolve("1F44D-1F3FD") == "👍🏽"
    assert resolve("heart") == "❤️"
    with pytest.raises(EmojiError, match="unknown emoji"):
        resolve("zzzz-not-a-name")


def test_mixed_scripts_split_into_text_and_emoji_runs() -> None:
    runs = split_runs("Hi 你好 こんにちは 🎉👨‍👩‍👧 #1")
    assert runs == [(False, "Hi 你好 こんにちは "), (True, "🎉"), (True, "👨‍👩‍👧"), (False, " #1")]


def test_bidi_controls_are_dropped_and_every_script_is_kept() -> None:
    text, warnings = clean_text("hello \u202eשלום world")  # a bidi override: bidi.py orders the line itself
    assert text == "hello שלום world" and not warnings
    text, warnings = clean_text("Łódź · İstanbul · Ελλάδα · Привет · مرحبا · नमस्ते · สวัสดี · 你好")
    assert text == "Łódź · İstanbul · Ελλάδα · Привет · مرحبا · नमस्ते · สวัสดี · 你好" and not warnings


def test_oversized_caption_shrinks_then_cuts_with_an_ellipsis() -> None:
    block = fit("long words " * 18, 27, 576, 130)
    assert block.size < 27 and block.height() <= 130 and block.width() <= 576
    huge = fit("字" * 200, 27, 200, 60)
    assert huge.truncated and huge.lines[-1][-1][1].endswith("…")
    s = render_meme("字" * 200, 640, 360)
    assert s is not None and s.width <= 640 and s.height <= 360 * 0.4


# ---------------------------------------------------------------- moods


@pytest.mark.parametrize("phrase, name", [
    ("so sleepy", "so sleepy"), ("SO SLEEPY!!", "so sleepy"), ("冲鸭!", "冲鸭!"), ("冲鸭！", "冲鸭!"),
    ("Monday again…", "Monday again…"), ("party time", "party time"), ("ugh, monday", "Monday again…"),
    ("i'm so sleepy today", "so sleepy"),
])
def test_mood_phrases_match_presets(phrase: str, name: str) -> None:
    m = MoodBook.builtin().match(phrase)
    assert m.known and m.mood.name == name


def test_unknown_mood_is_neutral_and_said() -> None:
    book = MoodBook.builtin()
    assert normalise("Monday again…") == "monday again"
    m = book.match("quantum chromodynamics")
    assert not m.known and m.mood.name == "neutral"
    pipe = FramePipeline(_bundled())
    state, notes = pipe.apply_with_notes(parse_control('{"mood": "quantum chromodynamics"}', NAMES))
    assert state.mood == "neutral" and "no mood matches" in notes[0]


def test_mood_sets_blend_strength_caption_style_and_emoji_and_explicit_fields_win() -> None:
    pipe = FramePipeline(_bundled())
    state, notes = pipe.apply_with_notes(parse_control('{"mood": "party time", "strength": 0.5}', NAMES))
    assert not notes
    assert state.weights == {"kandinsky": 0.5, "klimt": 0.5} and state.strength == 0.5
    assert state.caption_kind == "meme-bottom" and state.caption_color == "#ff8ad8" and "🎉" in state.emoji
    again, _ = FramePipeline(_bundled()).apply_with_notes(parse_control('{"mood": "party time"}', NAMES))
    assert again.weights == state.weights and again.emoji == state.emoji  # deterministic


def test_moods_toml_extends_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "moods.toml"
    f.write_text('[[mood]]\nname = "rainy day"\nphrases = ["rainy day", "下雨了"]\nweights = { monet = 1 }\n'
                 'strength = 0.6\ncaption = "thought"\ncolor = "#cfe8ff"\nemoji = ["rain", "cloud"]\n'
                 '[[mood]]\nname = "party time"\nphrases = ["party"]\ncaption = "subtitle"\n', encoding="utf-8")
    book = MoodBook.load(f)
    rainy = book.match("下雨了")
    assert rainy.mood.name == "rainy day" and rainy.mood.emoji == ("🌧️", "☁️")
    assert book.match("party").mood.caption_kind == "subtitle"
    for bad, why in [('[[mood]]\nname = "x"\nstrength = 3\n', "strength"),
                     ('[[mood]]\nname = "x"\nemoji = ["nope-nope"]\n', "unknown emoji"),
                     ('[[mood]]\nname = "x"\ncaption = "banner"\n', "caption"),
                     ("not toml [", "not valid TOML")]:
        f.write_text(bad, encoding="utf-8")
        with pytest.raises(MoodError, match=why):
            MoodBook.load(f)


# ---------------------------------------------------------------- rate limit (server path)


class _Channel:
    readyState = "open"

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, data: str) -> None:
        self.sent.append(json.loads(data))


def test_control_flood_is_rate_limited_with_an_error_reply() -> None:
    from realtime.live.session import Session
    from realtime.live.signalling import on_control

    session = Session(SimpleNamespace(), FramePipeline(_bundled()))
    session.channel = _Channel()
    for i in range(200):
        on_control(session, json.dumps({"strength": 0.5, "id": i}))
    replies = session.channel.sent
    states = [r for r in replies if r["type"] == "state"]
    errors = [r for r in replies if r["type"] == "error"]
    assert 30 <= len(states) <= 45  # the burst
    assert errors and "too many control messages" in errors[0]["message"] and "id" in errors[0]
    assert len(errors) <= 12  # error replies are limited too
    assert session.control_dropped == 200 - len(states)


def test_token_bucket_refills() -> None:
    b = TokenBucket(rate=10, burst=2, tokens=2, stamp=0.0)
    assert b.allow(0.0) and b.allow(0.0) and not b.allow(0.0)
    assert b.allow(0.11)


def test_state_reply_names_the_characters_no_font_has() -> None:
    from realtime.live.session import Session
    from realtime.live.signalling import on_control

    session = Session(SimpleNamespace(), FramePipeline(_bundled()))
    session.channel = _Channel()
    on_control(session, json.dumps({"caption": "hi שלום", "id": 5}))
    reply = session.channel.sent[-1]
    assert reply["type"] == "state" and reply["id"] == 5 and not reply.get("notice")
    on_control(session, json.dumps({"caption": "hi \u0d9a שלום", "id": 6}))  # Sinhala: no caption font has it
    reply = session.channel.sent[-1]
    assert reply["id"] == 6 and "U+0D9A" in reply["notice"] and "drawn as" in reply["notice"]


# ---------------------------------------------------------------- placement


def test_choice_has_hysteresis() -> None:
    c = Choice()
    assert c.choose({"a": 10, "b": 12}) == "a"
    assert c.choose({"a": 10, "b": 9}) == "a"  # only a little calmer: stay
    assert [c.choose({"a": 10, "b": 3}) for _ in range(3)] == ["a", "a", "b"]  # clearly calmer for 3 rounds
    # Having moved, it stays MIN_DWELL rounds even where the old place is clearly calmer again, then goes back.
    back = [c.choose({"a": 3, "b": 10}) for _ in range(MIN_DWELL + SWITCH_AFTER)]
    assert set(back[:MIN_DWELL]) == {"b"} and back[-1] == "a"
    f = Flag(on=10, off=5)
    assert [f.update(x) for x in (8, 11, 7, 4)] == [False, True, True, False]


def test_a_blocked_place_is_left_at_once() -> None:
    c = Choice()
    assert c.choose({"a": 10, "b": 12}) == "a"
    assert [c.choose({"a": 10, "b": 3}) for _ in range(3)] == ["a", "a", "b"]  # moved: MIN_DWELL rounds start
    assert c.choose({"a": 3, "b": 10}, blocked={"b"}) == "a" and c.forced  # covering something: leave now
    assert c.choose({"a": 3, "b": 10}, blocked={"a", "b"}) == "a"  # nowhere free: the calmest stays


def test_stickers_never_cover_the_caption_while_the_bubble_moves() -> None:
    """The bubble goes where the frame is calm; stickers placed before it moved must get out of its way at once,
    not after their dwell (a screenshot caught the emoji drawn over the bubble's text for a second or two)."""
    rng = np.random.default_rng(1)
    layer = ExpressionLayer(detector=lambda: None)
    ex = Expression(caption="Monday again... 又是周一", kind="speech", emoji=("coffee", "weary"))
    covered = []
    for i in range(240):
        img = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        calm = (i // 30) % 4  # a calm quadrant that moves every 30 frames
        y, x = (calm // 2) * 180, (calm % 2) * 320
        img[y : y + 180, x : x + 320] = 128
        out = img.copy()
        layer.draw(img, out, ex)
        cap, st = layer.layout["caption"], layer.layout["stickers"]
        covered.append(overlap(tuple(st), tuple(cap)))  # type: ignore[arg-type]
    assert max(covered) <= STICKER_COVER_LIMIT, f"stickers covered the caption: {max(covered):.2f} of their area"


def test_busy_map_prefers_the_calm_region() -> None:
    rng = np.random.default_rng(0)
    img = np.full((360, 640, 3), 120, np.uint8)
    img[:180] = rng.integers(0, 255, (180, 640, 3), dtype=np.uint8)  # noisy top half
    bm = BusyMap(img)
    assert bm.score((0, 0, 640, 100)) > 5 * bm.score((0, 250, 640, 100))
    layer = ExpressionLayer(detector=lambda: None)
    for _ in range(3):
        out = img.copy()
        layer.draw(img, out, Expression(caption="where do I go?", kind="meme"))
    assert layer.layout["caption"][1] > 180


# ---------------------------------------------------------------- faces


class _FixedDetector:
    """Stands in for the cascade: a face at a given place (in small-image pixels, scale 2)."""

    def __init__(self, box: tuple[int, int, int, int] | None) -> None:
        self.box = box

    def grab(self, rgb: np.ndarray, store: dict | None = None) -> tuple[np.ndarray, float]:
        return rgb, 1.0

    def small_grey(self, rgb: np.ndarray, store: dict | None = None) -> tuple[np.ndarray, float]:
        return rgb[::2, ::2, 0], 2.0

    def detect(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [self.box] if self.box else []


def test_face_tracker_glides_instead_of_jumping() -> None:
    det = _FixedDetector((50, 40, 40, 40))
    t = FaceTracker(det, every=3, threaded=False)  # type: ignore[arg-type]
    frame = np.zeros((360, 640, 3), np.uint8)
    first = t.update(frame, now=0.0)
    assert first == Box(100, 80, 80, 80)
    det.box = (150, 40, 40, 40)  # the face jumps 200 px
    xs = [t.update(frame, now=0.03 * i).x for i in range(1, 40)]
    steps = np.abs(np.diff([first.x, *xs]))
    assert steps.max() < 60 and abs(xs[-1] - 300) < 5  # smooth steps, and it arrives
    det.box = None
    for i in range(40, 100):
        last = t.update(frame, now=0.03 * i)
    assert last is None  # let go after HOLD_S without a face


def test_bubble_tail_points_at_the_face() -> None:
    frame = np.full((360, 640, 3), 90, np.uint8)
    layer = ExpressionLayer(detector=lambda: _FixedDetector((60, 70, 50, 50)), threaded_faces=False)  # type: ignore[arg-type,return-value]
    for _ in range(20):
        out = frame.copy()
        layer.draw(frame, out, Expression(caption="hello!", kind="speech"))
    fx, fy, fw, fh = layer.layout["face"]
    bx, by, bw, bh = layer.layout["caption"]
    assert (fx, fy, fw, fh) == (120, 140, 100, 100)
    assert bx >= fx + fw * 0.8 or bx + bw <= fx + fw * 0.2 or by + bh <= fy + fh * 0.2  # beside or above, not on it
    # Paper-white pixels of the tail reach close to the face's side.
    near = out[fy : fy + fh, fx + fw - 10 : fx + fw + 40]
    assert (near.min(axis=2) > 240).any()


def test_face_tracker_closed_mid_stream_keeps_drawing() -> None:
    """A stream that ends closes the tracker while the pipeline may still draw one last frame: that frame
    gets no new detection, and no error (it used to raise 'cannot schedule new futures after shutdown')."""
    det = load_detector()
    if det is None:
        pytest.skip("this OpenCV has no Haar cascades (opencv-python-headless<5 ships them)")
    img = np.asarray(Image.open(REPO / "engines/calibration/intel_headpose_male_0000.jpg").convert("RGB"))
    t = FaceTracker(det, every=1, threaded=True)
    t.update(img)  # a detection in flight
    t.close()
    for _ in range(10):  # once it lands, the next frame would start another on the closed pool
        time.sleep(0.05)
        box = t.update(img)  # must not raise
    assert box is not None, "the detection that was in flight should still place the overlays"


def test_real_cascade_finds_the_calibration_face() -> None:
    det = load_detector()
    if det is None:
        pytest.skip("this OpenCV has no Haar cascades (opencv-python-headless<5 ships them)")
    img = np.asarray(Image.open(REPO / "engines/calibration/intel_headpose_male_0000.jpg").convert("RGB"))
    t = FaceTracker(det, threaded=False)
    box = t.update(img)
    assert box is not None
    assert abs(box.x - 202) < 25 and abs(box.y - 40) < 25 and 60 < box.w < 130, box
    assert t.detect_ms > 0


# ---------------------------------------------------------------- compositing


def test_composite_matches_float_reference_and_clips() -> None:
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    s = Sprite.from_image(Image.fromarray(rgba, "RGBA"))
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    ref = frame.astype(np.float64)
    a = rgba[..., 3:4] / 255.0
    ref[10:50, 30:90] = rgba[..., :3] * a + ref[10:50, 30:90] * (1 - a)
    out = frame.copy()
    s.at(30, 10).composite(out)
    assert np.abs(out.astype(int) - np.rint(ref).astype(int)).max() <= 2
    edge = frame.copy()
    s.at(100, 90).composite(edge)  # hangs off the bottom-right: clipped, no error
    assert np.array_equal(edge[:90], frame[:90])


def test_torch_composite_matches_numpy_on_cpu_tensors() -> None:
    torch = pytest.importorskip("torch")
    made = render_bubble("hi 你好 🎉", 640, 360, "speech", (-30, 90))
    assert made is not None
    s = made[0].at(300, 40)
    frame = np.random.default_rng(2).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    ref = frame.copy()
    s.composite(ref)
    hwc = torch.from_numpy(frame.copy())
    composite_torch(hwc, s)
    assert np.abs(hwc.numpy().astype(int) - ref.astype(int)).max() <= 2
    chw = torch.from_numpy(frame.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    composite_torch(chw, s)
    back = (chw[0].permute(1, 2, 0) * 255).round().numpy().astype(int)
    assert np.abs(back - ref.astype(int)).max() <= 2


@functools.cache
def _bundled() -> Backend:
    """The bundled model on its default back-end, one thread (shared by these tests: the pipeline never writes it)."""
    return load_backend(None, "auto", 1)


def test_pipeline_draws_caption_bubble_and_stickers_without_errors() -> None:
    pipe = FramePipeline(_bundled())
    pipe.layer = ExpressionLayer(detector=lambda: None)
    pipe.apply(parse_control('{"caption": {"text": "hi 🎉", "kind": "thought"}, "emoji": ["fire"]}', NAMES))
    frame = np.full((360, 640, 3), 100, np.uint8)
    out = pipe.process(frame)
    assert set(pipe.layer.layout) == {"caption", "stickers"}
    bare = _bundled().stylize(frame, pipe._current_vector()[1], pipe.state.strength)
    x, y, w, h = pipe.layer.layout["caption"]
    assert np.abs(out[y : y + h, x : x + w].astype(int) - bare[y : y + h, x : x + w]).mean() > 10
    assert pipe.times.p50("overlay") < 200
