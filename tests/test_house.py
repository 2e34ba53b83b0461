"""House rules that are cheap to check: no import cycles in engines/ and realtime/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def test_no_import_cycles_in_engines_and_realtime() -> None:
    res = subprocess.run([sys.executable, "scripts/import_cycles.py"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith(" 0 cycles")
