"""Run the `realtime` command as on a serving install without torch: `python -m tests.notorch ARGS...`.

A meta-path finder answers every `import torch` (and torch.*) as not installed, the way a venv made by
`scripts/serve.sh` does, and each attempt is written to stderr with the module that made it, so a test
sees both the failure and the culprit.
"""

from __future__ import annotations

import importlib.abc
import sys
import traceback

BLOCKED = ("torch", "torchvision", "torchaudio")
MARK = "notorch: blocked import of"


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] not in BLOCKED:
            return  # not ours: the next finder looks
        stack = traceback.extract_stack()[:-1]
        # An import statement goes through _find_and_load; importlib.util.find_spec (a probe for "is it
        # installed?", as engines.loader does) does not, and is answered "no" without a report.
        if any(f.name == "_find_and_load" for f in stack):
            caller = next((f"{f.filename}:{f.lineno}" for f in reversed(stack)
                           if "importlib" not in f.filename and "<frozen" not in f.filename), "?")
            print(f"{MARK} {name} from {caller}", file=sys.stderr, flush=True)
        raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/notorch.py)", name=name)


def install() -> None:
    if any(m.split(".")[0] in BLOCKED for m in sys.modules):
        raise RuntimeError("torch is already imported; install the blocker first")
    sys.meta_path.insert(0, _NoTorch())


if __name__ == "__main__":
    install()
    from realtime.cli import main

    sys.exit(main(sys.argv[1:]))
