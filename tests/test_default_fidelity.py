"""The bundled student against its teacher's stored outputs (tests/fidelity, made by
`python -m train fidelity-fixture`): a retrained or re-exported default that drifts from the teacher it was
distilled from fails here. Runs on the default CPU back-end, the one users get."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.loader import load_backend
from tests.test_engines import psnr

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "fidelity"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "fidelity.json").read_text())


def test_bundled_student_stays_close_to_its_teacher(meta: dict) -> None:
    backend = load_backend(None, "auto", 1)
    settings = meta["settings"]
    missing = {n for s in settings for n in s["weights"]} - set(backend.style_names)
    assert not missing, f"the bundled model lacks the teacher's styles {sorted(missing)}"
    lines = []
    for name in meta["photos"]:
        strip = np.asarray(Image.open(FIXTURE / name).convert("RGB"))
        w = strip.shape[1] // (len(settings) + 1)
        x = np.ascontiguousarray(strip[:, :w])
        scores, identity = [], []
        for i, s in enumerate(settings):
            target = strip[:, (i + 1) * w:(i + 2) * w]
            y = backend.stylize(x, backend.contract.weights_vector(s["weights"]), s["strength"])
            scores.append(psnr(y, target))
            identity.append(psnr(x, target))
        mean = float(np.mean(scores))
        lines.append(f"{name}: student {mean:.2f} dB (input {np.mean(identity):.2f} dB); worst "
                     f"{settings[int(np.argmin(scores))]['label']} {min(scores):.2f} dB")
        assert mean >= meta["floor_mean_db"], lines[-1]
        for s, v in zip(settings, scores):
            assert v >= meta["floor_setting_db"], f"{name} {s['label']}: {v:.2f} dB < {meta['floor_setting_db']} dB"
        # The teacher's look is in the output: much closer to it than the unstyled input is.
        full = [v - u for v, u, s in zip(scores, identity, settings) if s["strength"] == 1.0]
        assert np.mean(full) >= 3.0, f"{name}: student barely closer to the teacher than the input ({np.mean(full):.2f} dB)"
    print("\n[fidelity] " + "; ".join(lines))
