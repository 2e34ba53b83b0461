"""The aiohttp application keys the server and the browser-session signalling share."""

from __future__ import annotations

import concurrent.futures

from aiohttp import web

from engines.backends import Backend
from realtime.expression.moods import MoodBook
from realtime.live.metrics import StageHistograms

BACKEND_KEY = web.AppKey("backend", Backend)
SESSIONS_KEY = web.AppKey("sessions", dict)  # session id -> Session (realtime/live/signalling.py)
EXECUTOR_KEY = web.AppKey("executor", concurrent.futures.Executor)
MOODS_KEY = web.AppKey("moods", MoodBook)
METRICS_KEY = web.AppKey("metrics", object)
HISTOGRAMS_KEY = web.AppKey("histograms", StageHistograms)
