// "Add your style": 1 to 3 pictures (drop, picker or phone camera), optional weights, a progress bar with an
// ETA while the server fits, then the style is in the gallery and the blend like any other. Your styles get
// rename and delete buttons. Talks to /api/styles (realtime/live/style_api.py); app.js owns the gallery.

const MAX_PICTURES = 3;
const POLL_MS = 500;

export function setupMyStyles({ app, token, renderStyles, pickStyle, showError }) {
  const $ = (id) => document.getElementById(id);
  const el = {
    card: $("mystyle"), drop: $("mystyle-drop"), files: $("mystyle-files"), camera: $("mystyle-camera"),
    list: $("mystyle-list"), name: $("mystyle-name"), add: $("mystyle-add"), form: $("mystyle-form"),
    progress: $("mystyle-progress"), bar: $("mystyle-bar"), status: $("mystyle-status"),
    cancel: $("mystyle-cancel"), note: $("mystyle-note"),
  };
  const auth = () => (token ? { Authorization: `Bearer ${token}` } : {});
  const state = { pictures: [], job: null, fit: null };

  function renderPictures() {
    el.list.replaceChildren();
    state.pictures.forEach((p, i) => {
      const row = document.createElement("div");
      row.className = "mystyle-pic";
      const img = document.createElement("img");
      img.src = p.url;
      img.alt = p.file.name;
      const weight = document.createElement("input");
      weight.type = "number";
      weight.min = "0";
      weight.step = "0.5";
      weight.value = String(p.weight);
      weight.className = "mystyle-weight";
      weight.setAttribute("aria-label", `Weight of ${p.file.name}`);
      weight.addEventListener("input", () => { p.weight = Number(weight.value); });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-small";
      remove.textContent = "×";
      remove.title = "Remove this picture";
      remove.addEventListener("click", () => {
        URL.revokeObjectURL(p.url);
        state.pictures.splice(i, 1);
        renderPictures();
      });
      row.append(img, weight, remove);
      el.list.append(row);
    });
    el.add.disabled = !state.pictures.length || !!state.job || (state.fit && !state.fit.available);
  }

  function addFiles(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) { note(`${file.name} is not a picture`); continue; }
      if (state.pictures.length >= MAX_PICTURES) { note(`At most ${MAX_PICTURES} pictures`); break; }
      state.pictures.push({ file, url: URL.createObjectURL(file), weight: 1 });
    }
    if (!el.name.value && state.pictures.length) {
      el.name.value = state.pictures[0].file.name.toLowerCase().replace(/\.[a-z0-9]+$/, "")
        .replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+/, "").slice(0, 32) || "my-style";
    }
    renderPictures();
  }

  function note(text) { el.note.textContent = text; }

  function showProgress(job) {
    el.progress.hidden = !job || !["queued", "running"].includes(job.state);
    if (!job) return;
    el.bar.value = job.progress;
    const eta = job.eta_s != null ? ` · about ${Math.ceil(job.eta_s)} s left` : "";
    el.status.textContent = job.state === "queued" ? "Waiting for another fit…" : `${Math.round(job.progress * 100)}%${eta}`;
  }

  async function refresh() {
    const resp = await fetch("/api/styles", { headers: auth(), cache: "no-store" });
    if (!resp.ok) return;
    const body = await resp.json();
    state.fit = body.fit;
    const known = new Set(app.styles.map((s) => s.name));
    app.styles = body.styles || [];
    for (const s of app.styles) if (!known.has(s.name) && !(s.name in app.weights)) app.weights[s.name] = 0;
    for (const name of Object.keys(app.weights)) if (!app.styles.some((s) => s.name === name)) delete app.weights[name];
    renderStyles();
    applyAvailability();
  }

  function applyAvailability() {
    const off = state.fit && !state.fit.available;
    el.card.classList.toggle("unavailable", !!off);
    for (const input of [el.files, el.camera, el.name]) input.disabled = !!off;
    if (off) note(state.fit.error);  // e.g. "fitting a style needs torch: pip install 'stylizer[styles]'"
    renderPictures();
  }

  async function poll(id) {
    while (state.job === id) {
      const resp = await fetch(`/api/styles/jobs/${id}`, { headers: auth(), cache: "no-store" });
      const job = resp.ok ? (await resp.json()).job : null;
      if (!job) { state.job = null; break; }
      showProgress(job);
      if (job.state === "done") {
        state.job = null;
        note(`Added ${job.name}: ${job.message}`);
        for (const p of state.pictures) URL.revokeObjectURL(p.url);
        state.pictures = [];
        el.name.value = "";
        await refresh();
        pickStyle(job.name);
        break;
      }
      if (job.state === "failed" || job.state === "cancelled") {
        state.job = null;
        note(job.state === "failed" ? `The fit failed: ${job.error}` : "Cancelled");
        break;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    showProgress(null);
    renderPictures();
  }

  async function submit(ev) {
    ev.preventDefault();
    if (!state.pictures.length || state.job) return;
    const form = new FormData();
    form.append("name", el.name.value.trim());
    for (const p of state.pictures) form.append("image", p.file, p.file.name);
    form.append("weights", state.pictures.map((p) => p.weight).join(","));
    note("");
    el.add.disabled = true;
    const resp = await fetch("/api/styles", { method: "POST", body: form, headers: auth() });
    const body = await resp.json().catch(() => ({}));
    if (resp.status !== 202) {
      note(body.error || `The server refused it (HTTP ${resp.status})`);
      renderPictures();
      return;
    }
    state.job = body.job.id;
    showProgress(body.job);
    poll(body.job.id);
  }

  async function rename(name) {
    const next = prompt(`New name for ${name} (lowercase letters, digits, - or _):`, name);
    if (!next || next === name) return;
    const resp = await fetch(`/api/styles/${encodeURIComponent(name)}`, {
      method: "PATCH", headers: { ...auth(), "Content-Type": "application/json" }, body: JSON.stringify({ name: next }),
    });
    if (!resp.ok) { showError((await resp.json().catch(() => ({}))).error || "Rename failed"); return; }
    app.weights[next] = app.weights[name] || 0;
    delete app.weights[name];
    await refresh();
  }

  async function remove(name) {
    if (!confirm(`Delete your style ${name}?`)) return;
    const resp = await fetch(`/api/styles/${encodeURIComponent(name)}`, { method: "DELETE", headers: auth() });
    if (!resp.ok) { showError((await resp.json().catch(() => ({}))).error || "Delete failed"); return; }
    await refresh();
  }

  // Your styles' tiles get rename and delete buttons each time app.js draws the gallery.
  document.addEventListener("styles-rendered", () => {
    for (const s of app.styles) {
      if (s.kind !== "user") continue;
      const tile = document.querySelector(`.tile[data-style="${CSS.escape(s.name)}"]`);
      if (!tile || tile.querySelector(".tile-tools")) continue;
      tile.classList.add("user-style");
      const tools = document.createElement("span");
      tools.className = "tile-tools";
      for (const [label, title, fn] of [["✎", "Rename", rename], ["×", "Delete", remove]]) {
        const b = document.createElement("span");
        b.setAttribute("role", "button");
        b.tabIndex = 0;
        b.className = "tile-tool";
        b.textContent = label;
        b.title = `${title} ${s.name}`;
        b.dataset.action = title.toLowerCase();
        b.addEventListener("click", (e) => { e.stopPropagation(); fn(s.name); });
        tools.append(b);
      }
      tile.append(tools);
    }
  });

  el.files.addEventListener("change", () => { addFiles(el.files.files); el.files.value = ""; });
  el.camera.addEventListener("change", () => { addFiles(el.camera.files); el.camera.value = ""; });
  el.drop.addEventListener("dragover", (e) => { e.preventDefault(); el.drop.classList.add("over"); });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  el.form.addEventListener("submit", submit);
  el.cancel.addEventListener("click", async () => {
    if (state.job) await fetch(`/api/styles/jobs/${state.job}`, { method: "DELETE", headers: auth() });
  });
  return { refresh, addFiles, get job() { return state.job; } };
}
