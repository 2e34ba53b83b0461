import { setupMyStyles } from "./mystyles.js";

// Stylizer web app: camera -> WebRTC -> server (stylize + captions, bubbles, stickers) -> back on the same transceiver.
// Plain ES module, no build step. A small test hook is exposed as window.stylizer.

import { MAX_RECENT, loadSettings, remember, saveSettings } from "./prefs.js";

const SEND_INTERVAL_MS = 100;      // control messages: at most 10 per second (the server allows 20)
const ICE_GATHER_TIMEOUT_MS = 3000;
const OFFER_TIMEOUT_MS = 20000;
const REPLY_TIMEOUT_MS = 5000;
const DISCONNECT_GRACE_MS = 5000;
const RECONNECT_DELAYS_S = [1, 2, 4, 8, 15];   // back-off after a lost session; the last one repeats
const PICKER_EMOJI = ["party", "fire", "heart", "laugh", "cool", "sleepy", "zzz", "coffee", "think", "wow",
                      "cry", "angry", "thumbsup", "clap", "sparkles", "rocket", "duck", "music", "100", "skull"];

const PRETTY_NAMES = {
  vangogh: "Van Gogh", hokusai: "Hokusai", kandinsky: "Kandinsky",
  monet: "Monet", klimt: "Klimt", lineart: "Line art", munch: "Munch", cartoon: "Cartoon",
};

// The server's bearer token, when it has one: open the page as /?token=TOKEN once. It is kept for this tab
// (sessionStorage) and taken out of the address bar, so it does not end up in bookmarks or screenshots.
const TOKEN = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    try { sessionStorage.setItem("stylizer-token", given); } catch { /* storage off: keep it in memory */ }
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    return given;
  }
  try { return sessionStorage.getItem("stylizer-token") || ""; } catch { return ""; }
})();

const $ = (id) => document.getElementById(id);
const el = {
  toggle: $("toggle"), status: $("status"), statusText: $("status-text"),
  error: $("error"), errorText: $("error-text"), errorClose: $("error-close"),
  remote: $("remote"), local: $("local"), pip: $("pip"), placeholder: $("placeholder"),
  hud: $("hud"), hudFps: $("hud-fps"), hudLatency: $("hud-latency"), hudDropped: $("hud-dropped"), hudSize: $("hud-size"),
  caption: $("caption"), captionCount: $("caption-count"), captionClear: $("caption-clear"),
  gallery: $("gallery"), blend: $("blend"), strength: $("strength"), strengthValue: $("strength-value"),
  camera: $("camera"), resolution: $("resolution"), snapshot: $("snapshot"), record: $("record"),
  recordLabel: $("record-label"), kinds: $("kinds"), captionColor: $("caption-color"),
  emojiGrid: $("emoji-grid"), emojiCode: $("emoji-code"), emojiAdd: $("emoji-add"), emojiClear: $("emoji-clear"),
  emojiCount: $("emoji-count"), moodForm: $("mood-form"), mood: $("mood"), moodList: $("mood-list"),
  moodChips: $("mood-chips"), moodResult: $("mood-result"),
  screen: document.querySelector(".screen"), mirror: $("mirror"), fullscreen: $("fullscreen"),
  captionHistory: $("caption-history"),
};

// ---------------------------------------------------------------- state

const app = {
  styles: [],              // [{name, thumb}]
  captionLimit: 200,
  weights: {},             // raw slider values 0..1 per style (what the user set)
  strength: 1.0,
  caption: "",
  captionKind: "meme-bottom",
  captionColor: "#ffffff",
  emoji: [],               // names or codes as the user picked them (the server resolves them)
  mirror: false,           // the server flips the picture (a selfie view); captions still read
  recentCaptions: [],      // captions said before, newest first (offered under the caption box)
  emojiNames: {},          // short name -> emoji character (from /api/emoji)
  emojiLimit: 8,
  moods: [],
  running: false,
  reconnect: { attempt: 0, timer: null, active: false },
  recorder: null,
  generation: 0,           // bumps on every start/stop, so stale async steps give up
  pcGeneration: 0,         // bumps on every peer connection (reconnects keep the camera)
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
  document.dispatchEvent(new CustomEvent("styles-rendered"));  // web/mystyles.js adds your styles' tools
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
  persist();
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
    if (msg.notice) showNotice(msg.notice);
  } else if (msg.type === "error") {
    showNotice(`The server refused a setting: ${msg.message}`);
  } else if (msg.type === "notice") {
    // Not a reply: something the server says about the video (a frame size), or why it ends the session.
    if (msg.fatal) showError(`The server ended the session: ${msg.message}`);
    else showNotice(msg.message);
    return;
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
  if (typeof st.caption_kind === "string") app.captionKind = st.caption_kind;
  if (typeof st.caption_color === "string") app.captionColor = st.caption_color;
  if (Array.isArray(st.emoji) && st.emoji.join("") !== app.emoji.map(emojiChar).join("")) app.emoji = st.emoji;
  if (typeof st.mirror === "boolean") app.mirror = st.mirror;
  syncExpressionControls();
  syncMirror();
  persist();
}

function currentSettings() {
  const positive = Object.fromEntries(Object.entries(app.weights).filter(([, w]) => w > 0));
  const msg = { strength: app.strength, caption: app.caption, caption_kind: app.captionKind,
                caption_color: app.captionColor, emoji: app.emoji, mirror: app.mirror };
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
      headers: TOKEN ? { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` }
                     : { "Content-Type": "application/json" },
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

// A session that was live and then broke is retried with back-off; a failed first start is not
// (the user is right there and reads the error).
function connectionLost(gen, message) {
  if (gen !== app.generation || !app.running) return;
  const wasLive = app.serverState !== null || app.reconnect.active;
  teardown();
  if (!wasLive) {
    stop();
    showError(message);
    setStatus("error", "Disconnected");
    return;
  }
  scheduleReconnect(message);
}

function scheduleReconnect(message) {
  const r = app.reconnect;
  r.active = true;
  const delay = RECONNECT_DELAYS_S[Math.min(r.attempt, RECONNECT_DELAYS_S.length - 1)];
  r.attempt++;
  const gen = app.generation;
  let left = delay;
  const tick = () => {
    if (gen !== app.generation || !app.running) return;
    showError(`${message} Reconnecting in ${left} s… (attempt ${r.attempt})`);
    setStatus("busy", "Reconnecting…");
    if (left <= 0) { tryReconnect(gen); return; }
    left--;
    r.timer = setTimeout(tick, 1000);
  };
  tick();
}

async function tryReconnect(gen) {
  showError("Reconnecting to the server…");
  let up = false;
  try {
    const ctrl = new AbortController();
    const t = setTimeout(() => ctrl.abort(), 2000);
    const resp = await fetch("/healthz", { cache: "no-store", signal: ctrl.signal });
    clearTimeout(t);
    up = resp.ok;
  } catch { up = false; }
  if (gen !== app.generation || !app.running) return;
  if (!up) {
    scheduleReconnect("The server is down or restarting.");
    return;
  }
  const ok = await connect(gen);
  if (!ok && gen === app.generation && app.running) scheduleReconnect("Could not reconnect yet.");
}

function reconnected() {
  if (!app.reconnect.active) return;
  app.reconnect = { attempt: 0, timer: null, active: false };
  showNotice("Reconnected to the server.");
}

async function openCamera() {
  const [w, h] = el.resolution.value.split("x").map(Number);
  const video = { width: { ideal: w }, height: { ideal: h } };
  if (el.camera.value) video.deviceId = { exact: el.camera.value };
  if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error("no mediaDevices"), { name: "Unsupported" });
  return navigator.mediaDevices.getUserMedia({ video, audio: false });
}

async function listCameras() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const cams = devices.filter((d) => d.kind === "videoinput");
    const current = el.camera.value;
    el.camera.replaceChildren(...cams.map((d, i) => {
      const o = document.createElement("option");
      o.value = d.deviceId;
      o.textContent = d.label || `Camera ${i + 1}`;
      return o;
    }));
    if (!cams.length) el.camera.append(new Option("No camera found", ""));
    if (current && cams.some((d) => d.deviceId === current)) el.camera.value = current;
  } catch { /* no device list: keep the default */ }
}

async function start() {
  if (app.running) return;
  clearError();
  app.running = true;
  app.reconnect = { attempt: 0, timer: null, active: false };
  const gen = ++app.generation;
  el.toggle.textContent = "Stop";
  el.toggle.classList.add("btn-stop");
  setStatus("busy", "Opening camera…");

  let stream;
  try {
    stream = await openCamera();
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
  listCameras();
  const [track] = stream.getVideoTracks();
  track.addEventListener("ended", () => {
    if (gen !== app.generation) return;
    stop();
    showError("The camera stopped (it was unplugged or switched off).");
    setStatus("error", "No camera");
  });
  await connect(gen);
}

// One peer connection over the open camera stream. Returns true once the answer is applied.
async function connect(gen) {
  setStatus("busy", "Connecting…");
  const stream = app.stream;
  const [track] = stream.getVideoTracks();
  const pc = new RTCPeerConnection({ iceServers: [] });
  app.pc = pc;
  const pcGen = ++app.pcGeneration;
  const alive = () => gen === app.generation && pcGen === app.pcGeneration;
  // The data channel must exist before the offer, so it is negotiated with the video.
  const channel = pc.createDataChannel("control", { ordered: true });
  app.channel = channel;
  channel.addEventListener("open", () => {
    if (!alive()) return;
    send(currentSettings());   // make the server match what the page shows (also after a reconnect)
  });
  channel.addEventListener("message", onChannelMessage);
  channel.addEventListener("close", () => {
    if (alive()) connectionLost(gen, "The connection to the server was lost.");
  });

  const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
  preferVp8(transceiver);
  await keepResolution(transceiver.sender);

  pc.addEventListener("track", (ev) => {
    if (ev.track.kind !== "video") return;
    // A live mirror wants the shortest playout delay the network allows, not smoothing.
    if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
    el.remote.srcObject = ev.streams[0] || new MediaStream([ev.track]);
  });
  pc.addEventListener("connectionstatechange", () => {
    if (!alive()) return;
    const st = pc.connectionState;
    if (st === "connected") {
      clearTimeout(app.disconnectTimer);
      if (el.remote.readyState >= 2) setStatus("live", "Live");
    } else if (st === "disconnected") {
      setStatus("busy", "Reconnecting…");
      clearTimeout(app.disconnectTimer);
      app.disconnectTimer = setTimeout(() => {
        if (alive() && pc.connectionState !== "connected") connectionLost(gen, "The connection to the server was lost.");
      }, DISCONNECT_GRACE_MS);
    } else if (st === "failed") {
      connectionLost(gen, app.serverState || app.reconnect.active
        ? "The connection to the server was lost."
        : "Could not open a video connection to the server (the network may block WebRTC).");
    }
  });

  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (!alive()) return false;
    setStatus("busy", "Waiting for the server…");
    const answer = await postOffer(pc.localDescription);
    if (!alive()) return false;
    await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
  } catch (e) {
    if (!alive()) return false;
    if (app.reconnect.active) { teardown(); return false; }
    stop();
    showError(e.message || String(e));
    setStatus("error", "Not connected");
    return false;
  }
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(() => pollRtcStats(pc, gen), 1000);
  return true;
}

// Closes the peer connection but keeps the camera (and app.running) for a reconnect.
function teardown() {
  app.pcGeneration++;
  clearTimeout(app.disconnectTimer);
  clearInterval(app.statsTimer);
  for (const { resolve, timer } of app.pending.values()) {
    clearTimeout(timer);
    resolve({ type: "error", message: "disconnected" });
  }
  app.pending.clear();
  stopRecording();
  if (app.channel) { try { app.channel.close(); } catch { /* already closed */ } }
  if (app.pc) { try { app.pc.close(); } catch { /* already closed */ } }
  app.pc = app.channel = null;
  app.serverState = null;
  app.stats = null;
  app.rtc = { rttMs: null, jitterMs: null };
  el.remote.srcObject = null;
  el.hud.hidden = true;
  el.snapshot.disabled = el.record.disabled = true;
}

function stop() {
  app.generation++;
  app.running = false;
  clearTimeout(app.reconnect.timer);
  app.reconnect = { attempt: 0, timer: null, active: false };
  teardown();
  if (app.stream) app.stream.getTracks().forEach((t) => t.stop());
  app.stream = null;
  el.local.srcObject = null;
  el.pip.hidden = true;
  el.placeholder.hidden = false;
  el.toggle.textContent = "Start camera";
  el.toggle.classList.remove("btn-stop");
  setStatus("idle", "Stopped");
  syncStyleControls();
}

// Camera or resolution changed while running: reopen the camera and renegotiate.
async function restart() {
  if (!app.running) return;
  stop();
  await start();
}

// ---------------------------------------------------------------- snapshot and recording

function stamp() {
  return new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function snapshot() {
  const v = el.remote;
  if (!v.videoWidth) { showNotice("No video yet: press Start first."); return Promise.resolve(null); }
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  return new Promise((resolve) => c.toBlob((blob) => {
    if (blob) download(blob, `stylizer-${stamp()}.png`);
    resolve(blob);
  }, "image/png"));
}

function startRecording() {
  const stream = el.remote.srcObject;
  if (!stream || !window.MediaRecorder) { showNotice("Recording is not supported in this browser."); return; }
  const type = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"].find((t) => MediaRecorder.isTypeSupported(t));
  let rec;
  try { rec = new MediaRecorder(stream, type ? { mimeType: type, videoBitsPerSecond: 2_500_000 } : undefined); }
  catch (e) { showNotice(`Recording could not start (${e.name || e}).`); return; }
  const chunks = [];
  const started = performance.now();
  rec.addEventListener("dataavailable", (ev) => { if (ev.data.size) chunks.push(ev.data); });
  rec.addEventListener("stop", () => {
    clearInterval(rec._timer);
    el.record.classList.remove("recording");
    el.recordLabel.textContent = "Record";
    if (chunks.length) download(new Blob(chunks, { type: "video/webm" }), `stylizer-${stamp()}.webm`);
  });
  rec.start(1000);
  rec._timer = setInterval(() => {
    const s = Math.round((performance.now() - started) / 1000);
    el.recordLabel.textContent = `Stop ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }, 500);
  el.record.classList.add("recording");
  el.recordLabel.textContent = "Stop 0:00";
  app.recorder = rec;
}

function stopRecording() {
  if (app.recorder && app.recorder.state !== "inactive") app.recorder.stop();
  app.recorder = null;
}

// ---------------------------------------------------------------- say something: kinds, colour, emoji, mood

function syncExpressionControls() {
  for (const b of el.kinds.querySelectorAll("button")) {
    b.setAttribute("aria-checked", String(b.dataset.kind === app.captionKind));
  }
  if (el.captionColor.value !== app.captionColor) el.captionColor.value = app.captionColor;
  const chosen = new Set(app.emoji.map(emojiChar));
  for (const b of el.emojiGrid.querySelectorAll("button")) {
    b.classList.toggle("picked", chosen.has(b.textContent));
    b.setAttribute("aria-pressed", String(chosen.has(b.textContent)));
  }
  el.emojiCount.textContent = `${app.emoji.length} / ${app.emojiLimit}`;
}

function emojiChar(nameOrChar) {
  return app.emojiNames[nameOrChar] || nameOrChar;
}

function setEmoji(list) {
  lastUserInput = performance.now();
  app.emoji = list.slice(0, app.emojiLimit);
  syncExpressionControls();
  queueControl({ emoji: app.emoji });
}

function renderEmojiGrid() {
  el.emojiGrid.replaceChildren();
  for (const name of PICKER_EMOJI) {
    const ch = app.emojiNames[name];
    if (!ch) continue;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "emoji";
    b.textContent = ch;
    b.title = name;
    b.dataset.name = name;
    b.addEventListener("click", () => {
      const chars = app.emoji.map(emojiChar);
      const i = chars.indexOf(ch);
      if (i >= 0) setEmoji(app.emoji.filter((_, k) => k !== i));
      else if (app.emoji.length >= app.emojiLimit) showNotice(`At most ${app.emojiLimit} stickers.`);
      else setEmoji([...app.emoji, name]);
    });
    el.emojiGrid.append(b);
  }
  syncExpressionControls();
}

function renderMoods() {
  el.moodList.replaceChildren(...app.moods.flatMap((m) => [m.name, ...m.phrases.slice(0, 2)])
    .filter((v, i, a) => a.indexOf(v) === i).map((v) => new Option(v)));
  el.moodChips.replaceChildren(...app.moods.filter((m) => m.name !== "neutral").slice(0, 8).map((m) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = `${m.emoji[0] || ""} ${m.name}`.trim();
    b.addEventListener("click", () => { el.mood.value = m.name; applyMood(m.name); });
    return b;
  }));
}

async function applyMood(phrase) {
  phrase = phrase.trim();
  if (!phrase) return;
  lastUserInput = performance.now();
  if (!channelOpen()) {
    el.moodResult.textContent = "Start the camera first, then set a mood.";
    return;
  }
  el.moodResult.textContent = "…";
  const reply = await send({ mood: phrase });
  if (reply.type !== "state") {
    el.moodResult.textContent = reply.message;
    return;
  }
  lastUserInput = 0;  // take the mood's blend, strength, caption style and emoji at once
  adoptServerState(reply);
  syncStyleControls();
  el.moodResult.textContent = reply.notice ? reply.notice : `Mood: ${reply.mood}`;
  el.moodResult.classList.toggle("warn", Boolean(reply.notice));
}

// ---------------------------------------------------------------- wiring

el.remote.addEventListener("playing", () => {
  if (!app.running) return;
  el.placeholder.hidden = true;
  el.hud.hidden = false;
  el.snapshot.disabled = el.record.disabled = false;
  setStatus("live", "Live");
  reconnected();
});

el.toggle.addEventListener("click", () => (app.running ? stop() : start()));
el.camera.addEventListener("change", restart);
el.resolution.addEventListener("change", restart);
el.snapshot.addEventListener("click", () => snapshot());
el.record.addEventListener("click", () => (app.recorder ? stopRecording() : startRecording()));
el.kinds.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-kind]");
  if (!b) return;
  lastUserInput = performance.now();
  app.captionKind = b.dataset.kind;
  syncExpressionControls();
  queueControl({ caption_kind: app.captionKind });
});
el.captionColor.addEventListener("input", () => {
  lastUserInput = performance.now();
  app.captionColor = el.captionColor.value;
  queueControl({ caption_color: app.captionColor });
});
el.emojiAdd.addEventListener("click", async () => {
  const code = el.emojiCode.value.trim();
  if (!code) return;
  if (app.emoji.length >= app.emojiLimit) { showNotice(`At most ${app.emojiLimit} stickers.`); return; }
  const next = [...app.emoji, code];
  if (!channelOpen()) { app.emoji = next; syncExpressionControls(); el.emojiCode.value = ""; return; }
  const reply = await send({ emoji: next });   // the server says whether it knows that emoji
  if (reply.type === "state") { el.emojiCode.value = ""; app.emoji = reply.emoji; syncExpressionControls(); }
});
el.emojiCode.addEventListener("keydown", (ev) => { if (ev.key === "Enter") el.emojiAdd.click(); });
el.emojiClear.addEventListener("click", () => setEmoji([]));
el.moodForm.addEventListener("submit", (ev) => { ev.preventDefault(); applyMood(el.mood.value); });
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
el.caption.addEventListener("change", () => {   // Enter, or leaving the box: a caption said
  app.recentCaptions = remember(app.recentCaptions, el.caption.value);
  renderCaptionHistory();
  persist();
});
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
    const resp = await fetch("/api/styles", { headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {} });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const body = await resp.json();
    app.styles = body.styles || [];
    if (body.limits && body.limits.caption_chars) {
      app.captionLimit = body.limits.caption_chars;
      el.caption.maxLength = app.captionLimit;
    }
    updateCaptionCount();
    if (body.limits && body.limits.emoji) app.emojiLimit = body.limits.emoji;
    if (app.styles.length) app.weights = Object.fromEntries(app.styles.map((s, i) => [s.name, i === 0 ? 1 : 0]));
    restoreSettings();
    renderStyles();
    myStyles.refresh();
    const [emoji, moods] = await Promise.all([fetch("/api/emoji").then((r) => r.json()), fetch("/api/moods").then((r) => r.json())]);
    app.emojiNames = Object.fromEntries(emoji.emoji.map((e) => [e.name, e.emoji]));
    app.moods = moods.moods || [];
    renderEmojiGrid();
    renderMoods();
  } catch (e) {
    el.gallery.innerHTML = '<div class="loading">Styles unavailable</div>';
    showError("Can't reach the stylizer server. Check that it is running, then reload this page.");
    setStatus("error", "Offline");
  }
}

const myStyles = setupMyStyles({ app, token: TOKEN, renderStyles, pickStyle, showError });

// ---------------------------------------------------------------- settings kept between visits (prefs.js)

function persist() {
  saveSettings({ weights: app.weights, strength: app.strength, captionKind: app.captionKind,
                 captionColor: app.captionColor, caption: app.caption, recent: app.recentCaptions,
                 emoji: app.emoji, mirror: app.mirror });
}

function restoreSettings() {
  const saved = loadSettings();
  const unit = (v) => (typeof v === "number" && Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : null);
  if (saved.weights && typeof saved.weights === "object") {
    const w = Object.fromEntries(app.styles.map(({ name }) => [name, unit(saved.weights[name]) || 0]));
    if (Object.values(w).some((v) => v > 0)) app.weights = w;   // styles the server no longer has drop out
  }
  if (unit(saved.strength) !== null) {
    app.strength = unit(saved.strength);
    el.strength.value = String(Math.round(app.strength * 100));
  }
  const kinds = [...el.kinds.querySelectorAll("button[data-kind]")].map((b) => b.dataset.kind);
  if (kinds.includes(saved.captionKind)) app.captionKind = saved.captionKind;
  if (/^#[0-9a-f]{6}$/i.test(saved.captionColor || "")) app.captionColor = saved.captionColor.toLowerCase();
  if (typeof saved.caption === "string") {
    el.caption.value = app.caption = saved.caption.slice(0, app.captionLimit);
    updateCaptionCount();
  }
  const strings = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === "string" && x) : []);
  app.recentCaptions = strings(saved.recent).slice(0, MAX_RECENT);
  app.emoji = strings(saved.emoji).slice(0, app.emojiLimit);
  if (typeof saved.mirror === "boolean") app.mirror = saved.mirror;
  renderCaptionHistory();
  syncExpressionControls();
  syncMirror();
}

function renderCaptionHistory() {
  el.captionHistory.replaceChildren(...app.recentCaptions.map((c) => new Option(c)));
}

// ---------------------------------------------------------------- mirror, full screen, hotkeys

function syncMirror() {
  el.mirror.setAttribute("aria-pressed", String(app.mirror));
  document.body.classList.toggle("mirrored", app.mirror);
}

function toggleMirror() {
  lastUserInput = performance.now();
  app.mirror = !app.mirror;
  syncMirror();
  queueControl({ mirror: app.mirror });
}

function toggleFullscreen() {
  if (document.fullscreenElement) { document.exitFullscreen().catch(() => {}); return; }
  if (!el.screen.requestFullscreen) { showNotice("Full screen is not available in this browser."); return; }
  el.screen.requestFullscreen().catch(() => showNotice("The browser did not allow full screen here."));
}

// A phone's caption box is too narrow for the whole placeholder: a shorter one there.
const narrow = matchMedia("(max-width: 560px)");
const longPlaceholder = el.caption.placeholder;
const fitPlaceholder = () => { el.caption.placeholder = narrow.matches ? "Say something… 🎉" : longPlaceholder; };
narrow.addEventListener("change", fitPlaceholder);
fitPlaceholder();

el.mirror.addEventListener("click", toggleMirror);
el.fullscreen.addEventListener("click", toggleFullscreen);

// 1-9: the styles in gallery order; Space: snapshot; C: the caption box; M: mirror; F: full screen.
// Not while typing in a text box (Escape leaves the caption box), and not with Ctrl, Alt or Cmd.
const TYPING = "input:not([type=range]):not([type=color]):not([type=checkbox]):not([type=radio]), textarea, select";
document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing || ev.repeat) return;
  const target = ev.target instanceof Element ? ev.target : null;
  if (target && (target.matches(TYPING) || target.isContentEditable)) {
    if (ev.key === "Escape" && target === el.caption) el.caption.blur();
    return;
  }
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (/^[1-9]$/.test(key)) {
    const style = app.styles[Number(key) - 1];
    if (style) pickStyle(style.name);
  } else if (key === " ") {
    snapshot();
  } else if (key === "c") {
    el.caption.focus();   // preventDefault below: the "c" is not typed into it
  } else if (key === "m") {
    toggleMirror();
  } else if (key === "f") {
    toggleFullscreen();
  } else {
    return;
  }
  ev.preventDefault();   // Space would also press a focused button or scroll the page
});

// Test hook (also handy from the devtools console).
window.stylizer = {
  start,
  stop,
  send,                                 // send(obj) -> Promise<reply>
  get state() { return app.serverState; },
  get stats() { return app.stats; },
  get lastError() { return app.lastError; },
  get running() { return app.running; },
  get mirror() { return app.mirror; },
  get reconnecting() { return app.reconnect.active; },
  snapshot,
  applyMood,
  get connectionState() { return app.pc ? app.pc.connectionState : "closed"; },
  get pc() { return app.pc; },
  get channel() { return app.channel; },
  get styles() { return app.styles.map((s) => s.name); },
  remote: el.remote,
  local: el.local,
  myStyles,
  ready: loadStyles(),
};
