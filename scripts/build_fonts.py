"""Rebuilds the committed fonts: the caption fonts in realtime/expression/fontfiles/ and the page's CJK subset in web/fonts/.

Caption fonts: Noto's variable fonts from PyPI (OFL 1.1), each instanced at Bold (wght 700, wdth 100, to match
Noto Sans CJK Bold) and subset to its script, so the repository carries about 0.65 MB instead of 4.5 MB.
Page font: the Chinese and Japanese characters the web app itself shows (web/*.html, web/*.js and the mood
presets), cut from Noto Sans CJK (the cvttf-NotoSansCJK-Bold package) into a few KiB of WOFF2; text a user types
loads the whole font from /fonts/caption/cjk.otf only when it needs it (web/style.css).
Needs fonttools and brotli (not runtime dependencies) and the network to PyPI:

    .venv/bin/pip install fonttools brotli && .venv/bin/python scripts/build_fonts.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.varLib import instancer

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "realtime" / "fontfiles"
PAGE_FONT = REPO / "web" / "fonts" / "page-cjk.woff2"
COMMON = "0020,00A0,200B-200F,25CC"  # spaces, ZWSP/ZWNJ/ZWJ/LRM/RLM and the dotted circle shapers insert

# (output, PyPI requirement, file inside the wheel, code point ranges)
FONTS = [
    ("NotoSans-Bold.ttf", "fontpkg-noto-sans==2.15", "fontpkg_noto_sans/files/NotoSans[wdth,wght].ttf",
     # Latin with every extension in use, IPA, combining marks, Greek (with polytonic), Cyrillic,
     # punctuation, currency, letterlike, arrows, and U+FFFD (the fallback glyph).
     ("0020-007E,00A0-036F,0370-03FF,0400-052F,1AB0-1AFF,1DC0-1DFF,1E00-1FFF,2000-206F,20A0-20CF,2100-214F,"
      "2190-21FF,2C60-2C7F,A720-A7FF,FFFD")),
    ("NotoSansArabic-Bold.ttf", "fontpkg-noto-sans-arabic==2.12",
     "fontpkg_noto_sans_arabic/files/NotoSansArabic[wdth,wght].ttf", "0600-06FF,0750-077F,08A0-08FF,FB50-FDFF,FE70-FEFF"),
    ("NotoSansHebrew-Bold.ttf", "justmytype-intl-rtl==0.1.0",
     "justmytype_intl_rtl/fonts/ofl/notosanshebrew/NotoSansHebrew[wdth,wght].ttf", "0590-05FF,FB1D-FB4F"),
    ("NotoSansDevanagari-Bold.ttf", "fontpkg-noto-sans-devanagari==2.7",
     "fontpkg_noto_sans_devanagari/files/NotoSansDevanagari[wdth,wght].ttf", "0900-097F,1CD0-1CFF,20B9,A8E0-A8FF"),
    ("NotoSansThai-Bold.ttf", "fontpkg-noto-sans-thai==2.2",
     "fontpkg_noto_sans_thai/files/NotoSansThai[wdth,wght].ttf", "0E00-0E7F"),
]


def code_points(ranges: str) -> list[int]:
    out: list[int] = []
    for part in ranges.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a, 16), int(b or a, 16) + 1))
    return out


def build(src: Path, dst: Path, ranges: str) -> None:
    font = TTFont(src)
    axes = {a.axisTag for a in font["fvar"].axes}
    font = instancer.instantiateVariableFont(font, {k: v for k, v in (("wght", 700), ("wdth", 100)) if k in axes},
                                             updateFontNames=True)
    opts = subset.Options()
    opts.layout_features = ["*"]  # every shaping feature (init/medi/fina, half forms, marks ...)
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    opts.hinting = False
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=code_points(f"{COMMON},{ranges}"))
    sub.subset(font)
    font.save(dst)


def page_characters() -> str:
    """The CJK characters the page can show on its own: its files' text and the mood presets."""
    sys.path.insert(0, str(REPO))
    from realtime.expression.moods import BUILTIN

    text = "".join(p.read_text() for p in sorted((REPO / "web").glob("*.*")) if p.suffix in (".html", ".js"))
    text += "".join(m["name"] + "".join(m["phrases"]) for m in BUILTIN)
    return "".join(sorted({c for c in text if 0x2E80 <= ord(c) <= 0x9FFF or 0xFF00 <= ord(c) <= 0xFFEF}))


def build_page_font() -> None:
    from realtime.expression.fonts import text_font_path

    opts = subset.Options()
    opts.flavor = "woff2"
    opts.layout_features = ["*"]
    opts.hinting = False
    sub = subset.Subsetter(opts)
    sub.populate(text=page_characters())
    font = TTFont(text_font_path())
    sub.subset(font)
    PAGE_FONT.parent.mkdir(exist_ok=True)
    font.flavor = "woff2"
    font.save(PAGE_FONT)
    # The face's unicode-range in web/style.css lists exactly these characters (the whole font serves the rest).
    css = REPO / "web" / "style.css"
    ranges = ", ".join(f"U+{ord(c):X}" for c in page_characters())
    css.write_text(re.sub(r"(/\* page-cjk characters \*/ unicode-range: )[^;]*;", rf"\g<1>{ranges};", css.read_text()))
    print(f"{PAGE_FONT.name}: {PAGE_FONT.stat().st_size / 1024:.0f} KiB, {len(page_characters())} characters")


def main() -> int:
    build_page_font()
    if "--page-only" in sys.argv:
        return 0
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, req, member, ranges in FONTS:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, req], check=True)
            wheel = next(Path(tmp).glob(req.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                src = Path(tmp) / Path(member).name
                src.write_bytes(z.read(member))
            build(src, OUT / name, ranges)
            print(f"{name}: {(OUT / name).stat().st_size / 1024:.0f} KiB from {req}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
