// Settings kept in localStorage between visits: the blend (a pure style is a blend of one), strength, caption
// kind and colour, stickers, mirror, the caption and the captions said before. Storage may be off (private
// windows, blocked cookies): then nothing is kept, and nothing breaks.

const KEY = "stylizer-settings";
const SAVE_DELAY_MS = 300;     // coalesce a slider drag into one write
export const MAX_RECENT = 8;   // captions offered again under the caption box

let pending = null;
let timer = null;

export function loadSettings() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) || "null");
    return value && typeof value === "object" && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

function write() {
  clearTimeout(timer);
  timer = null;
  if (!pending) return;
  try { localStorage.setItem(KEY, JSON.stringify(pending)); } catch { /* storage off or full */ }
  pending = null;
}

export function saveSettings(settings) {
  pending = settings;
  if (!timer) timer = setTimeout(write, SAVE_DELAY_MS);
}

// A reload or a closed tab must not lose the last change.
addEventListener("pagehide", write);

// recent: newest first, no repeats, at most MAX_RECENT.
export function remember(recent, caption) {
  const text = caption.trim();
  if (!text) return recent;
  return [text, ...recent.filter((c) => c !== text)].slice(0, MAX_RECENT);
}
