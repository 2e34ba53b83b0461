"""Run settings: a preset TOML (a path, or a name in train/presets/) plus `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import random
import tomllib
from pathlib import Path
from typing import TypeVar

import torch

PRESETS = Path(__file__).resolve().parent / "presets"
T = TypeVar("T")


def read_preset(preset: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A preset's flat keys. `base = "NAME"` first reads that preset (a path, or a name in train/presets/,
    looked up beside this one first), then this file's keys replace its."""
    path = Path(preset)
    if not path.is_file() and seen and (seen[-1].parent / f"{preset}.toml").is_file():
        path = seen[-1].parent / f"{preset}.toml"
    elif not path.is_file() and (PRESETS / f"{preset}.toml").is_file():
        path = PRESETS / f"{preset}.toml"
    path = path.resolve()
    if path in seen:
        raise ValueError(f"preset {path.name}: its bases form a loop")
    with open(path, "rb") as f:
        values = tomllib.load(f)
    base = values.pop("base", None)
    return {**read_preset(base, (*seen, path)), **values} if base else values


def load_settings(cls: type[T], what: str, preset: str | Path | None, overrides: list[str] = ()) -> T:
    """Build the dataclass `cls` from flat preset keys, then overrides in TOML value syntax; unknown keys are errors."""
    values: dict = {}
    if preset is not None:
        values.update(read_preset(preset))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw  # a bare string
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)}")
    return cls(**values)


def sample_strength(n: int, rng: random.Random, p_full: float) -> torch.Tensor:
    """(n, 1) strengths: 1 with probability p_full (the style itself), else uniform in [0, 1)."""
    return torch.tensor([[1.0 if rng.random() < p_full else rng.random()] for _ in range(n)])
