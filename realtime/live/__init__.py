"""The live service (`realtime serve`): aiohttp + aiortc.

- server: the app, its routes and `serve`; signalling: the browser session's offer/answer;
- session (web sessions), streams (WHIP publishers, many WHEP viewers), feeds (WHIP/WHEP routes, viewer page),
  track: the frame step both sessions and streams run (newest-frame reader, frame checks, storm guard);
- api, style_api, style_jobs, control, static: the HTTP API, own-style fitting and the control channel;
- auth, security, guard, ratelimit, limits: tokens, Host/Origin/CORS, error containment, rate and size limits;
- worker (the supervised inference thread), metrics, ice, playout, stop (signals, full disk).
"""
