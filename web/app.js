// Stylizer web app: camera -> WebRTC -> server (stylize + caption) -> back on the same transceiver.
// Plain ES module, no build step. A small test hook is exposed as window.stylizer.

const SEND_INTERVAL_MS = 100;      // control messages: at most 10 per second
const ICE_GATHER_TIMEOUT_MS = 3000;
const OFFER_TIMEOUT_MS = 20000;
const REPLY_TIMEOUT_MS = 5000;
const DISCONNECT_GRACE_MS = 5000;

const PRETTY_NAMES = {
  vangogh: "Van Gogh", hokusai: "Hokusai", kandinsky: "Kandinsky",
  monet: "Monet", klimt: "Klimt", lineart: "Line art",
};

const $ = (id) => document.getElementById(id);
const el = {
  toggle: $("toggle"), status: $("status"), statusText: $("status-text"),
  error: $("error"), errorText: $("error-text"), errorClose: $("error-close"),
  remote: $("remote"), local: $("local"), pip: $("pip"), placeholder: $("placeholder"),
  hud: $("hud"), hudFps: $("hud-fps"), hudLatency: $("hud-latency"), hudDropped: $("hud-dropped"), hudSize: $("hud-size"),
  caption: $("caption"), captionCount: $("caption-count"), captionClear: $("caption-clear"),
  gallery: $("gallery"), blend: $("blend"), strength: $("strength"), strengthValue: $("strength-value"),
};

// ---------------------------------------------------------------- state

const app = {
  styles: [],              // [{name, thumb}]
  captionLimit: 200,
  weights: {},             // raw slider values 0..1 per style (what the user set)
  strength: 1.0,
  caption: "",
  running: false,
  generation: 0,           // bumps on every start/stop, so stale async steps give up
  pc: null,
  channel: null,
  stream: null,
  serverState: null,       // last {"type": "state"} from the server
  stats: null,             // last {"type": "stats"} from the server
  rtc: { rttMs: null, jitterMs: null },
  lastError: null,
  nextId: 1,
  pending: new Map(),      // id -> {resolve, timer}
  disconnectTimer: null,
  statsTimer: null,
};

// ---------------------------------------------------------------- UI helpers

function prettyName(name) {
  return PRETTY_NAMES[name] || name.replace(/[_-]+/g, " ").replace(/\b\w/g, (c) => c.toUpperCase());
}

function hueOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function setStatus(state, text) {
  el.status.dataset.state = state;
  el.statusText.textContent = text;
}

function showError(message) {
  app.lastError = message;
  el.errorText.textContent = message;
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
}

let noticeTimer = null;
function showNotice(message) {
  // Non-fatal: a refused control message. Shown briefly in the banner.
  showError(message);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { if (app.lastError === message) clearError(); }, 4000);
}

function explainMediaError(err) {
  const name = err && err.name;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser can't use the camera here. Open the page over https:// or on localhost.";
  }
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
    case "PermissionDeniedError":
      return "Camera permission was denied. Allow camera access for this page (the camera icon in the address bar) and press Start again.";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera and press Start again.";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "The camera could not be opened. Another app may be using it; close that app and press Start again.";
    default:
      return `The camera could not be started (${name || "unknown error"}).`;
  }
}

// ---------------------------------------------------------------- styles: gallery, blend, strength

function renderStyles() {
  el.gallery.replaceChildren();
  el.blend.replaceChildren();
  for (const { name, thumb } of app.styles) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile";
    tile.dataset.style = name;
    tile.title = `Use ${prettyName(name)} only`;
    tile.style.setProperty("--hue", hueOf(name));
    const img = document.createElement("img");
    img.alt = "";
    img.loading = "lazy";
    img.addEventListener("error", () => { img.remove(); tile.classList.add("no-thumb"); });
    if (thumb) img.src = thumb; else tile.classList.add("no-thumb");
    const label = document.createElement("span");
    label.className = "tile-label";
    label.textContent = prettyName(name);
    tile.append(img, label);
    tile.addEventListener("click", () => pickStyle(name));
    el.gallery.append(tile);

    const row = document.createElement("label");
    row.className = "blend-row";
    row.style.setProperty("--hue", hueOf(name));
    const caption = document.createElement("span");
    caption.className = "blend-name";
    caption.textContent = prettyName(name);
    const slider = document.createElement("input");
    slider.type = "range";
    slider.className = "range";
    slider.min = "0";
    slider.max = "100";
    slider.dataset.style = name;
    slider.setAttribute("aria-label", `${prettyName(name)} weight`);
    const share = document.createElement("span");
    share.className = "blend-share";
    share.dataset.style = name;
    slider.addEventListener("input", () => {
      lastUserInput = performance.now();
      app.weights[name] = Number(slider.value) / 100;
      onWeightsChanged();
    });
    row.append(caption, slider, share);
    el.blend.append(row);
  }
  syncStyleControls();
}

function normalized(weights) {
  const total = Object.values(weights).reduce((a, b) => a + Math.max(0, b), 0);
  const out = {};
  for (const { name } of app.styles) out[name] = total > 0 ? Math.max(0, weights[name] || 0) / total : 0;
  return out;
}

function syncStyleControls() {
  // Shares shown are the server's (normalised) state when connected, else the local sliders'.
  const shares = normalized(app.serverState ? app.serverState.weights : app.weights);
  for (const slider of el.blend.querySelectorAll("input[type=range]")) {
    const v = Math.round((app.weights[slider.dataset.style] || 0) * 100);
    if (Number(slider.value) !== v) slider.value = String(v);
    slider.style.setProperty("--fill", `${v}%`);
  }
  for (const span of el.blend.querySelectorAll(".blend-share")) {
    span.textContent = `${Math.round(shares[span.dataset.style] * 100)}%`;
  }
  for (const tile of el.gallery.querySelectorAll(".tile")) {
    const s = shares[tile.dataset.style] || 0;
    tile.classList.toggle("active", s > 0.999);
    tile.classList.toggle("in-blend", s > 0 && s <= 0.999);
    tile.style.setProperty("--share", `${Math.round(s * 100)}%`);
  }
  const strengthPct = Math.round(app.strength * 100);
  el.strength.style.setProperty("--fill", `${strengthPct}%`);
  el.strengthValue.textContent = `${strengthPct}%`;
}

function pickStyle(name) {
  lastUserInput = performance.now();
  for (const { name: n } of app.styles) app.weights[n] = n === name ? 1 : 0;
  syncStyleControls();
  queueControl({ style: name });
}

function onWeightsChanged() {
  const positive = Object.entries(app.weights).filter(([, w]) => w > 0);
  syncStyleControls();
  if (positive.length === 0) {
    showNotice("Give at least one style some weight.");
    return;
  }
  queueControl({ weights: Object.fromEntries(positive) });
}

// ---------------------------------------------------------------- control channel

let queued = null;       // merged patch waiting to be sent
let lastSentAt = 0;
let flushTimer = null;

function queueControl(patch) {
  // Coalesce updates and send at most one message per SEND_INTERVAL_MS.
  queued = { ...(queued || {}) };
  if ("style" in patch) delete queued.weights;
  if ("weights" in patch) delete queued.style;
  Object.assign(queued, patch);
  if (flushTimer) return;
  const wait = Math.max(0, lastSentAt + SEND_INTERVAL_MS - performance.now());
  flushTimer = setTimeout(flushControl, wait);
}

function flushControl() {
  flushTimer = null;
  if (!queued) return;
  const msg = queued;
  queued = null;
  lastSentAt = performance.now();
  send(msg);
}

function channelOpen() {
  return app.channel && app.channel.readyState === "open";
}

// Sends one control object now. Returns a promise for the server's reply (state or error).
function send(obj) {
  const id = app.nextId++;
  const msg = { ...obj, id };
  if (!channelOpen()) return Promise.resolve({ type: "error", message: "not connected", id });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      app.pending.delete(id);
      resolve({ type: "error", message: "no reply from the server", id });
    }, REPLY_TIMEOUT_MS);
    app.pending.set(id, { resolve, timer });
    app.channel.send(JSON.stringify(msg));
  });
}

function onChannelMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  if (msg.type === "stats") {
    app.stats = msg;
    renderHud();
    return;
  }
  if (msg.type === "state") {
    app.serverState = msg;
    adoptServerState(msg);
    syncStyleControls();
  } else if (msg.type === "error") {
    showNotice(`The server refused a setting: ${msg.message}`);
  }
  // Replies come in order; one without an id (a message the server could not parse) answers the oldest.
  const key = msg.id != null ? msg.id : app.pending.keys().next().value;
  const waiter = key != null ? app.pending.get(key) : null;
  if (waiter) {
    clearTimeout(waiter.timer);
    app.pending.delete(key);
    waiter.resolve(msg);
  }
}

let lastUserInput = 0;   // performance.now() of the last slider/caption edit

// Show what the server actually uses (another tab or the test hook may have changed it),
// unless the user is in the middle of editing.
let adoptTimer = null;
function adoptServerState(st) {
  clearTimeout(adoptTimer);
  if (queued || flushTimer || performance.now() - lastUserInput < 400) {
    adoptTimer = setTimeout(() => {
      if (app.serverState) { adoptServerState(app.serverState); syncStyleControls(); }
    }, 450);
    return;
  }
  if (st.weights) {
    const max = Math.max(1, ...Object.values(st.weights));
    for (const { name } of app.styles) app.weights[name] = (st.weights[name] || 0) / max;
  }
  if (typeof st.strength === "number") {
    app.strength = st.strength;
    el.strength.value = String(Math.round(st.strength * 100));
  }
  if (typeof st.caption === "string" && document.activeElement !== el.caption && el.caption.value !== st.caption) {
    el.caption.value = app.caption = st.caption;
    updateCaptionCount();
  }
}

function currentSettings() {
  const positive = Object.fromEntries(Object.entries(app.weights).filter(([, w]) => w > 0));
  const msg = { strength: app.strength, caption: app.caption };
  if (Object.keys(positive).length) msg.weights = positive;
  return msg;
}

// ---------------------------------------------------------------- HUD

function renderHud() {
  const s = app.stats;
  if (!s) return;
  el.hudFps.textContent = (s.fps_out ?? 0).toFixed(0);
  el.hudDropped.textContent = String(s.dropped ?? 0);
  el.hudSize.textContent = s.width && s.height ? `${s.width}×${s.height}` : "";
  const parts = [s.process_ms, app.rtc.rttMs, app.rtc.jitterMs].filter((v) => typeof v === "number");
  el.hudLatency.textContent = parts.length ? `≈${Math.round(parts.reduce((a, b) => a + b, 0))}` : "–";
}

async function pollRtcStats(pc, gen) {
  if (gen !== app.generation || pc.connectionState === "closed") return;
  try {
    const report = await pc.getStats();
    let prev = app.rtc._jb;
    report.forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && typeof r.currentRoundTripTime === "number") {
        app.rtc.rttMs = r.currentRoundTripTime * 1000;
      }
      if (r.type === "inbound-rtp" && r.kind === "video" && r.jitterBufferEmittedCount) {
        const cur = { delay: r.jitterBufferDelay, count: r.jitterBufferEmittedCount };
        if (prev && cur.count > prev.count) {
          app.rtc.jitterMs = ((cur.delay - prev.delay) / (cur.count - prev.count)) * 1000;
        }
        app.rtc._jb = cur;
      }
    });
  } catch { /* closed while polling */ }
}

// ---------------------------------------------------------------- connection

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);   // send what we have; loopback-only hosts may never "complete"
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function preferVp8(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function" || !window.RTCRtpReceiver?.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities("video");
  if (!caps) return;
  const vp8 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
  if (!vp8.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== "video/vp8");
  try { transceiver.setCodecPreferences([...vp8, ...rest]); } catch (e) { console.warn("setCodecPreferences:", e); }
}

async function keepResolution(sender) {
  // Chromium otherwise lowers the resolution under its bandwidth estimate (640x360 -> 480x270).
  try {
    const params = sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch (e) {
    console.warn("degradationPreference not applied:", e);
  }
}

async function postOffer(desc) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), OFFER_TIMEOUT_MS);
  let resp;
  try {
    resp = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: desc.sdp, type: desc.type }),
      signal: ctrl.signal,
    });
  } catch (e) {
    throw new Error(e.name === "AbortError"
      ? "The server did not answer in time. It may be overloaded; try again."
      : "Can't reach the stylizer server. Check that it is running, then press Start again.");
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    const why = body && body.error ? body.error : `HTTP ${resp.status}`;
    throw new Error(`The server refused the video connection: ${why}`);
  }
  if (!body || typeof body.sdp !== "string") throw new Error("The server sent a broken answer. Try again.");
  return body;
}

function connectionLost(gen, message) {
  if (gen !== app.generation || !app.running) return;
  stop();
  showError(message);
  setStatus("error", "Disconnected");
}

async function start() {
  if (app.running) return;
  clearError();
  app.running = true;
  const gen = ++app.generation;
  el.toggle.textContent = "Stop";
  el.toggle.classList.add("btn-stop");
  setStatus("busy", "Opening camera…");

  let stream;
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error("no mediaDevices"), { name: "Unsupported" });
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: false });
  } catch (e) {
    if (gen !== app.generation) return;
    stop();
    showError(explainMediaError(e));
    setStatus("error", "No camera");
    return;
  }
  if (gen !== app.generation) { stream.getTracks().forEach((t) => t.stop()); return; }
  app.stream = stream;
  el.local.srcObject = stream;
  el.pip.hidden = false;
  const [track] = stream.getVideoTracks();
  track.addEventListener("ended", () => connectionLost(gen, "The camera stopped (it was unplugged or switched off)."));

  setStatus("busy", "Connecting…");
  const pc = new RTCPeerConnection({ iceServers: [] });
  app.pc = pc;
  // The data channel must exist before the offer, so it is negotiated with the video.
  const channel = pc.createDataChannel("control", { ordered: true });
  app.channel = channel;
  channel.addEventListener("open", () => {
    if (gen !== app.generation) return;
    send(currentSettings());   // make the server match what the page shows
  });
  channel.addEventListener("message", onChannelMessage);
  channel.addEventListener("close", () => connectionLost(gen, "The connection to the server was lost. Press Start to reconnect."));

  const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
  preferVp8(transceiver);
  await keepResolution(transceiver.sender);

  pc.addEventListener("track", (ev) => {
    if (ev.track.kind !== "video") return;
    el.remote.srcObject = ev.streams[0] || new MediaStream([ev.track]);
  });
  pc.addEventListener("connectionstatechange", () => {
    if (gen !== app.generation) return;
    const st = pc.connectionState;
    if (st === "connected") {
      clearTimeout(app.disconnectTimer);
      if (el.remote.readyState >= 2) setStatus("live", "Live");
    } else if (st === "disconnected") {
      setStatus("busy", "Reconnecting…");
      clearTimeout(app.disconnectTimer);
      app.disconnectTimer = setTimeout(() => {
        if (pc.connectionState !== "connected") connectionLost(gen, "The connection to the server was lost. Press Start to reconnect.");
      }, DISCONNECT_GRACE_MS);
    } else if (st === "failed") {
      connectionLost(gen, app.serverState
        ? "The connection to the server was lost. Press Start to reconnect."
        : "Could not open a video connection to the server (the network may block WebRTC).");
    }
  });

  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (gen !== app.generation) return;
    setStatus("busy", "Waiting for the server…");
    const answer = await postOffer(pc.localDescription);
    if (gen !== app.generation) return;
    await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
  } catch (e) {
    if (gen !== app.generation) return;
    stop();
    showError(e.message || String(e));
    setStatus("error", "Not connected");
    return;
  }
  app.statsTimer = setInterval(() => pollRtcStats(pc, gen), 1000);
}

function stop() {
  app.generation++;
  app.running = false;
  clearTimeout(app.disconnectTimer);
  clearInterval(app.statsTimer);
  for (const { resolve, timer } of app.pending.values()) {
    clearTimeout(timer);
    resolve({ type: "error", message: "stopped" });
  }
  app.pending.clear();
  if (app.channel) { try { app.channel.close(); } catch { /* already closed */ } }
  if (app.pc) { try { app.pc.close(); } catch { /* already closed */ } }
  if (app.stream) app.stream.getTracks().forEach((t) => t.stop());
  app.pc = app.channel = app.stream = null;
  app.serverState = null;
  app.stats = null;
  app.rtc = { rttMs: null, jitterMs: null };
  el.remote.srcObject = null;
  el.local.srcObject = null;
  el.pip.hidden = true;
  el.hud.hidden = true;
  el.placeholder.hidden = false;
  el.toggle.textContent = "Start camera";
  el.toggle.classList.remove("btn-stop");
  setStatus("idle", "Stopped");
  syncStyleControls();
}

// ---------------------------------------------------------------- wiring

el.remote.addEventListener("playing", () => {
  if (!app.running) return;
  el.placeholder.hidden = true;
  el.hud.hidden = false;
  setStatus("live", "Live");
});

el.toggle.addEventListener("click", () => (app.running ? stop() : start()));
el.errorClose.addEventListener("click", clearError);

el.strength.addEventListener("input", () => {
  lastUserInput = performance.now();
  app.strength = Number(el.strength.value) / 100;
  syncStyleControls();
  queueControl({ strength: app.strength });
});

function updateCaptionCount() {
  el.captionCount.textContent = `${el.caption.value.length} / ${app.captionLimit}`;
}
el.caption.addEventListener("input", () => {
  lastUserInput = performance.now();
  app.caption = el.caption.value.slice(0, app.captionLimit);
  updateCaptionCount();
  queueControl({ caption: app.caption });
});
el.captionClear.addEventListener("click", () => {
  el.caption.value = "";
  app.caption = "";
  updateCaptionCount();
  queueControl({ caption: "" });
  el.caption.focus();
});

async function loadStyles() {
  try {
    const resp = await fetch("/api/styles");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const body = await resp.json();
    app.styles = body.styles || [];
    if (body.limits && body.limits.caption_chars) {
      app.captionLimit = body.limits.caption_chars;
      el.caption.maxLength = app.captionLimit;
    }
    updateCaptionCount();
    if (app.styles.length) app.weights = Object.fromEntries(app.styles.map((s, i) => [s.name, i === 0 ? 1 : 0]));
    renderStyles();
  } catch (e) {
    el.gallery.innerHTML = '<div class="loading">Styles unavailable</div>';
    showError("Can't reach the stylizer server. Check that it is running, then reload this page.");
    setStatus("error", "Offline");
  }
}

// Test hook (also handy from the devtools console).
window.stylizer = {
  start,
  stop,
  send,                                 // send(obj) -> Promise<reply>
  get state() { return app.serverState; },
  get stats() { return app.stats; },
  get lastError() { return app.lastError; },
  get running() { return app.running; },
  get connectionState() { return app.pc ? app.pc.connectionState : "closed"; },
  get pc() { return app.pc; },
  get styles() { return app.styles.map((s) => s.name); },
  remote: el.remote,
  local: el.local,
  ready: loadStyles(),
};
