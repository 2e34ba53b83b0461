"""GET /static/{path}: the web app's files from web/, and nothing else.

The path is checked before the file system sees it: at most MAX_PARTS components, each 1-MAX_NAME
characters of [A-Za-z0-9._-] and not starting with a dot (so no `..`, hidden files, NUL, backslashes or
encoded slashes). Then no component may be a symlink, and the last must be a regular file. Anything else is
a 404, never a 500: aiohttp's own static handler let the OS error of a 256-character component
(ENAMETOOLONG) through as a 500 with a traceback, without a token.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

from aiohttp import web

MAX_NAME = 128
MAX_PARTS = 8
NAME = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}")


def web_dir() -> Path:
    return Path(str(importlib.resources.files("web")))


def resolve(root: Path, rel: str) -> Path | None:
    """The regular file `rel` names inside `root`, or None (bad name, symlink, missing, not a file)."""
    parts = rel.split("/")
    if not 0 < len(parts) <= MAX_PARTS or not all(NAME.fullmatch(p) for p in parts):
        return None
    path = root
    try:
        for part in parts:
            path = path / part
            if path.is_symlink():
                return None
        return path if path.is_file() else None
    except OSError:  # permissions and the like: a name we cannot serve
        return None


async def static_file(request: web.Request) -> web.StreamResponse:
    path = resolve(web_dir(), request.match_info.get("path", ""))
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)
