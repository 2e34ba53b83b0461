// The viewer page (/view/NAME): pulls a stylized stream over WHEP and shows it, with no controls.
// Overlay mode (?overlay=1) pulls only the expression layer: sprites (PNG, sent once) and where they go,
// on the WHEP session's "overlay" data channel, drawn on a transparent canvas.
// It reconnects by itself (stream not live yet, publisher restarted, server restarted).

const params = new URLSearchParams(location.search);
const streamName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "live");
const overlayMode = ["1", "true", "yes"].includes((params.get("overlay") || "").toLowerCase());
const token = params.get("token") || "";
const withAudio = params.get("audio") === "1";
const ICE_GATHER_TIMEOUT_MS = 2000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 5000;

const el = {
  video: document.getElementById("video"),
  canvas: document.getElementById("overlay"),
  status: document.getElementById("status"),
  message: document.getElementById("message"),
};
const bg = params.get("bg");
if (bg === "checker" || bg === "black") document.body.classList.add(`bg-${bg}`);
el.status.hidden = params.get("debug") !== "1";

// State for tests and debugging: window.viewer.
const viewer = {
  stream: streamName, mode: overlayMode ? "overlay" : "video", state: "idle", lastError: null,
  pc: null, resource: null, overlays: 0, drawn: 0, sprites: new Map(), current: null, refused: null,
};
window.viewer = viewer;

function setState(state, detail = "") {
  viewer.state = state;
  el.status.textContent = `${streamName}: ${state}${detail ? ` (${detail})` : ""}`;
}

// A refusal the viewer can fix (401: no token or the wrong one; 403: the server takes no outside viewers) is
// shown in the middle of the page; it goes away when the stream plays.
function explain(status, why) {
  const page = `/view/${encodeURIComponent(streamName)}`;
  let html;
  if (status === 401 && !token) {
    html = `This server needs a token to show the stream <b></b>. Open <code>${page}?token=TOKEN</code> with the token the server was started with.`;
  } else if (status === 401) {
    html = "The token in this link is not the server's token: check the <code>token=</code> part of the address.";
  } else {
    html = "The server refused this viewer: <span></span>";
  }
  el.message.innerHTML = html;
  const slot = el.message.querySelector("b, span");
  if (slot) slot.textContent = slot.tagName === "B" ? streamName : why;   // text, never markup, from outside
  el.message.hidden = false;
  viewer.refused = { status, why };
}

function authHeaders(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function waitForIceGathering(pc, timeoutMs) {
  // No trickle: WHEP gets one offer with every candidate. Loopback-only hosts may never say "complete".
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); clearTimeout(timer); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// ---------------------------------------------------------------- overlay drawing

function drawOverlay() {
  const msg = viewer.current;
  if (!msg) return;
  const c = el.canvas;
  if (c.width !== msg.w || c.height !== msg.h) { c.width = msg.w; c.height = msg.h; }
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  let drawn = 0;
  for (const item of msg.items) {
    const img = viewer.sprites.get(item.id);
    if (img && img.complete && img.naturalWidth) { ctx.drawImage(img, item.x, item.y); drawn++; }
  }
  viewer.overlays++;
  viewer.drawn = drawn;   // sprites on the canvas now
}

function onOverlayMessage(ev) {
  let msg;
  try { msg = JSON.parse(ev.data); } catch { return; }
  if (msg.type === "sprite") {
    const img = new Image();
    img.onload = () => drawOverlay();   // a sprite that arrives late is drawn as soon as it decodes
    img.src = msg.png;
    viewer.sprites.set(msg.id, img);
    if (viewer.sprites.size > 128) viewer.sprites.delete(viewer.sprites.keys().next().value);
  } else if (msg.type === "overlay") {
    viewer.current = msg;
    requestAnimationFrame(drawOverlay);
  }
}

// ---------------------------------------------------------------- WHEP session

let generation = 0;
let retryMs = RETRY_MIN_MS;

function closeSession() {
  const { pc, resource } = viewer;
  viewer.pc = null;
  viewer.resource = null;
  if (pc) pc.close();
  if (resource) fetch(resource, { method: "DELETE", headers: authHeaders() }).catch(() => {});
}

function retryLater(gen, state, detail) {
  if (gen !== generation) return;
  generation++;
  closeSession();
  setState(state, detail);
  const wait = retryMs;
  retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  setTimeout(() => connect(), wait);
}

async function connect() {
  const gen = ++generation;
  setState("connecting");
  const pc = new RTCPeerConnection({ iceServers: [] });
  viewer.pc = pc;
  // Data channel: in overlay mode it carries the overlay; otherwise it only tells us when the session ends
  // (the server closing the peer connection closes it at once, long before ICE would notice).
  const channel = pc.createDataChannel(overlayMode ? "overlay" : "status");
  channel.addEventListener("close", () => retryLater(gen, "waiting", "stream ended"));
  if (overlayMode) {
    channel.addEventListener("message", onOverlayMessage);
    el.canvas.hidden = false;
  } else {
    pc.addTransceiver("video", { direction: "recvonly" });
    if (withAudio) pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();   // this session's tracks (a reconnect starts a new one)
    pc.addEventListener("track", (ev) => {
      if (ev.track.kind !== "video" && !withAudio) return;
      // An overlay follows the live feed: the shortest playout delay the network allows.
      if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
      media.addTrack(ev.track);
      if (el.video.srcObject !== media) el.video.srcObject = media;
      el.video.muted = !withAudio;
      el.video.hidden = false;
      el.video.play().catch(() => { el.video.muted = true; el.video.play().catch(() => {}); });
    });
  }
  pc.addEventListener("connectionstatechange", () => {
    if (gen !== generation) return;
    const st = pc.connectionState;
    if (st === "connected") { setState("live"); retryMs = RETRY_MIN_MS; el.message.hidden = true; viewer.refused = null; }
    else if (st === "failed" || st === "closed") retryLater(gen, "reconnecting", st);
  });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (gen !== generation) return;
    const resp = await fetch(`/whep/${encodeURIComponent(streamName)}`, {
      method: "POST", headers: authHeaders({ "Content-Type": "application/sdp" }), body: pc.localDescription.sdp,
    });
    if (gen !== generation) return;
    if (!resp.ok) {
      let why = `HTTP ${resp.status}`;
      try { why = (await resp.json()).error || why; } catch { /* not JSON */ }
      viewer.lastError = why;
      if (resp.status === 401 || resp.status === 403) {
        explain(resp.status, why);
        retryMs = RETRY_MAX_MS;   // the token will not change by itself: retry slowly, for a server restarted
      }
      retryLater(gen, resp.status === 404 ? "waiting" : "error", why);
      return;
    }
    viewer.resource = resp.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  } catch (e) {
    viewer.lastError = String(e && e.message || e);
    retryLater(gen, "error", viewer.lastError);
  }
}

window.addEventListener("pagehide", () => { generation++; closeSession(); });
connect();
