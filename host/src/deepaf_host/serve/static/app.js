// DeepAf live page: preview (MJPEG read with fetch), readout, jog, autofocus, scan, viewer.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const client = sessionStorage.getItem("deepaf-client") || (() => {
  const id = Array.from(crypto.getRandomValues(new Uint8Array(12)), b => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("deepaf-client", id);
  return id;
})();
const $ = id => document.getElementById(id);
const withToken = url => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const headers = () => {
  const h = {"X-DeepAf-Client": client};
  if (token) h["X-DeepAf-Token"] = token;
  return h;
};
// What the browser tests read.
window.deepaf = {frames: 0, state: null, client};

function say(text) { $("message").textContent = text || ""; }

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {...headers(), "Content-Type": "application/json"},
                                body: JSON.stringify(body || {})});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { say(data.error || r.statusText); throw new Error(data.error || r.statusText); }
  say("");
  return data;
}

// --- live view: multipart/x-mixed-replace parsed from a fetch stream ------------------------
const preview = $("preview");
const shown = [];
function showFps() {  // frames shown over the last 2 s (also when none come any more)
  const now = performance.now();
  while (shown.length && now - shown[0] > 2000) shown.shift();
  $("fps").textContent = (shown.length / 2).toFixed(1) + " fps";
}
preview.addEventListener("load", () => {
  window.deepaf.frames += 1;
  shown.push(performance.now());
  showFps();
});

function indexOf(buf, len, pattern, from) {
  outer: for (let i = from; i + pattern.length <= len; i++) {
    for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

async function stream() {
  const crlf2 = new TextEncoder().encode("\r\n\r\n");
  for (;;) {
    try {
      const r = await fetch(withToken("/stream.mjpg"), {headers: headers()});
      if (!r.ok) throw new Error("stream " + r.status);
      const reader = r.body.getReader();
      let buf = new Uint8Array(1 << 20), len = 0;
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        if (len + value.length > buf.length) {
          const bigger = new Uint8Array(Math.max(buf.length * 2, len + value.length));
          bigger.set(buf.subarray(0, len)); buf = bigger;
        }
        buf.set(value, len); len += value.length;
        for (;;) {
          const end = indexOf(buf, len, crlf2, 0);
          if (end < 0) break;
          const head = new TextDecoder().decode(buf.subarray(0, end));
          const m = /Content-Length:\s*(\d+)/i.exec(head);
          if (!m) { buf.copyWithin(0, end + 4, len); len -= end + 4; continue; }
          const n = +m[1], start = end + 4;
          if (len < start + n + 2) break;
          const blob = new Blob([buf.slice(start, start + n)], {type: "image/jpeg"});
          const old = preview.src;
          preview.src = URL.createObjectURL(blob);
          if (old.startsWith("blob:")) URL.revokeObjectURL(old);
          buf.copyWithin(0, start + n + 2, len); len -= start + n + 2;
        }
      }
    } catch (e) { /* the server went away: try again */ }
    await new Promise(res => setTimeout(res, 1000));
  }
}

// "Save this frame": the JPEG on screen, as the browser received it.
$("snapshot").addEventListener("click", e => {
  if (!preview.src.startsWith("blob:")) { e.preventDefault(); return; }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  $("snapshot").download = `deepaf-${stamp}.jpg`;
  fetch(preview.src).then(r => r.blob()).then(blob => {  // a copy: the shown frame's URL is revoked at the next one
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = $("snapshot").download; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
  e.preventDefault();
});

// --- state ------------------------------------------------------------------------------------
const fmt = v => v == null ? "–" : v.toFixed(1);

function drawMap(scan) {
  const c = $("scan-map"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!scan || !scan.plan) return;
  const {cols, rows} = scan.plan;
  const s = Math.min(c.width / cols, c.height / rows);
  const zs = scan.tiles.filter(t => !t.empty && t.z_um != null).map(t => t.z_um);
  const lo = Math.min(...zs), hi = Math.max(...zs);
  for (const t of scan.tiles) {
    if (t.empty || t.z_um == null) g.fillStyle = "#ccc";
    else {
      const f = hi > lo ? (t.z_um - lo) / (hi - lo) : 0.5;
      g.fillStyle = `rgb(${Math.round(255 * f)},80,${Math.round(255 * (1 - f))})`;
    }
    g.fillRect(t.col * s, t.row * s, s - 1, s - 1);
    if (t.qc && t.qc !== "ok") { g.strokeStyle = "#f00"; g.strokeRect(t.col * s + 1, t.row * s + 1, s - 3, s - 3); }
  }
  if (scan.current) {  // the tile being imaged now
    g.lineWidth = 3; g.strokeStyle = "#ffb300";
    g.strokeRect(scan.current.col * s + 1.5, scan.current.row * s + 1.5, s - 4, s - 4);
    g.lineWidth = 1;
  }
}

let strategiesShown = false, lastScanKey = null;
async function poll() {
  try {
    const r = await fetch(withToken("/api/state"), {headers: headers()});
    if (r.status === 401) {
      $("conn").textContent = "token needed: open the URL the server printed"; $("conn").className = "badge bad";
      document.body.classList.add("readonly");
      return;
    }
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const s = await r.json();
    window.deepaf.state = s;
    const m = s.microscope;
    $("conn").textContent = m.connected ? (m.owner ? "scanning" : "connected") : (m.owner ? "scanning" : "disconnected");
    $("conn").className = "badge " + (m.connected || m.owner ? "ok" : "bad");
    if (m.owner === "scan") {  // the scan holds the board: show the tile it is imaging
      const cur = s.scan && s.scan.current;
      $("pos-x").textContent = cur ? fmt(cur.x_um) : "–"; $("pos-y").textContent = cur ? fmt(cur.y_um) : "–";
      $("pos-z").textContent = "–";
    } else if (m.position_um) {
      $("pos-x").textContent = fmt(m.position_um.x); $("pos-y").textContent = fmt(m.position_um.y);
      $("pos-z").textContent = fmt(m.position_um.z);
    } else if (!m.connected) {  // a lost board: no position to show
      for (const a of "xyz") $("pos-" + a).textContent = "–";
    }
    showFps();
    $("board-state").textContent = s.busy ? `${s.busy === "home" ? "homing" : s.busy} running… (Stop motion ends it)`
      : m.connected ? (m.busy ? "busy" : `${m.state}${m.locked ? " (locked: home or unlock)" : ""}`)
      : (m.owner ? "the scan holds the board" : "board lost: " + (m.error || "") + " (Reconnect)");
    const you = s.control.you;
    document.body.classList.toggle("readonly", !you);
    document.body.classList.toggle("scanning", !!m.owner);
    $("role").textContent = you ? "you control" : (s.control.held ? "read-only (another browser controls)" : "read-only");
    $("claim").hidden = you;
    if (!s.control.held && !you) post("/api/control", {action: "claim"}).catch(() => {});
    if (!strategiesShown) {
      for (const name of s.strategies) {
        $("af-strategy").add(new Option(name, name, name === "search", name === "search"));
        $("scan-af").add(new Option("scan AF: " + name, name, name === "search", name === "search"));
      }
      strategiesShown = true;
    }
    if (s.autofocus) {
      const a = s.autofocus;
      $("af-result").textContent = `${a.strategy}: ${a.ok ? "ok" : "failed (" + a.reason + ")"}, z ${fmt(a.z_um)} µm ` +
        `(moved ${fmt(a.correction_um)} µm), ${a.frames} frames`;
    }
    $("af").disabled = s.busy === "autofocus";
    const scan = s.scan;
    if (scan) {
      const total = scan.plan ? scan.plan.tiles : 0;
      $("scan-status").textContent = `${scan.name}: ${scan.status}, ${scan.done} / ${total || "?"} tiles` +
        (scan.error ? ` — ${scan.error}` : "");
      $("scan-progress").max = total || 1; $("scan-progress").value = scan.done;
      drawMap(scan);
      const key = `${scan.name} ${scan.status} ${scan.active}`;  // the list again when a scan ends
      if (lastScanKey !== key && !scan.active) loadSlides();
      lastScanKey = key;
    }
  } catch (e) {
    $("conn").textContent = "server unreachable"; $("conn").className = "badge bad";
  }
}

// --- controls ------------------------------------------------------------------------------------
function jogBy(code) {
  const xy = +$("xy-step").value, fine = +$("z-fine").value, coarse = +$("z-coarse").value;
  const d = {"x+": {dx_um: xy}, "x-": {dx_um: -xy}, "y+": {dy_um: xy}, "y-": {dy_um: -xy},
             "z+f": {dz_um: fine}, "z-f": {dz_um: -fine}, "z+c": {dz_um: coarse}, "z-c": {dz_um: -coarse}}[code];
  return post("/api/jog", d).catch(() => {});
}
document.querySelectorAll("[data-jog]").forEach(b => b.addEventListener("click", () => jogBy(b.dataset.jog)));
const KEYS = {ArrowUp: "y+", ArrowDown: "y-", ArrowLeft: "x-", ArrowRight: "x+", "+": "z+f", "=": "z+f", "-": "z-f",
              PageUp: "z+c", PageDown: "z-c"};
document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  const code = KEYS[e.key];
  if (code && window.deepaf.state && window.deepaf.state.control.you) { e.preventDefault(); jogBy(code); }
});
$("go").onclick = () => {
  const body = {};
  for (const a of ["x", "y", "z"]) {
    const v = $("go-" + a).value.trim();
    if (v !== "") body[a + "_um"] = Number(v);
  }
  post("/api/move", body).catch(() => {});
};
$("home").onclick = () => { say("homing…"); post("/api/home").catch(() => {}); };
$("unlock").onclick = () => post("/api/unlock").catch(() => {});
$("halt").onclick = () => post("/api/stop").then(r => {
  if (r.stopped === "home") say("homing stopped: the board is locked (home again, or unlock)");
  else if (r.stopped === "autofocus") say("autofocus stopped");
}).catch(() => {});
$("reconnect").onclick = () => post("/api/reconnect").catch(() => {});
$("claim").onclick = () => post("/api/control", {action: "claim"}).catch(() => {});
$("af").onclick = () => {
  $("af-result").textContent = "focusing…";
  post("/api/autofocus", {strategy: $("af-strategy").value}).catch(e => { $("af-result").textContent = e.message; });
};
$("scan-start").onclick = () => {
  const body = {name: $("scan-name").value.trim(), resume: $("scan-resume").checked};
  const area = $("scan-area").value.trim(), z = $("scan-z").value.trim();
  if (area) body.area_mm = area;
  if (z !== "") body.z_start_um = Number(z);
  body.autofocus = $("scan-af").value;
  post("/api/scan/start", body).catch(() => {});
};
$("scan-z-here").onclick = () => {
  const p = window.deepaf.state && window.deepaf.state.microscope.position_um;
  if (p) $("scan-z").value = p.z.toFixed(1);
};
$("scan-stop").onclick = () => post("/api/scan/stop").catch(() => {});

// --- viewer: finished scans, the slide in OpenSeadragon, its focus map and report ------------------
async function loadSlides() {
  const r = await fetch(withToken("/api/slides"), {headers: headers()});
  if (!r.ok) return;
  const {slides} = await r.json();
  const ul = $("slides");
  ul.replaceChildren(...slides.map(s => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#"; a.textContent = `${s.name} (${s.status || "?"}${s.slide ? "" : ", not stitched"})`;
    a.onclick = e => { e.preventDefault(); openSlide(s); };
    li.append(a);
    return li;
  }));
}

// OpenSeadragon (vendored: static/openseadragon.min.js) over the OME-TIFF's own pyramid:
// OpenSeadragon's level L is the slide's level (maxLevel - L), since each level of the
// slide is half the one above it (rounded up), as OpenSeadragon's levels are; a tile is
// one TIFF tile (/slides/NAME/tile/LEVEL/ROW/COL.jpg), edge tiles cropped.
let viewer = null;
window.deepaf.viewer = {name: null, loaded: 0, failed: 0, levels: []};

function tileSource(name, levels) {
  const full = levels[0];
  const maxLevel = Math.ceil(Math.log2(Math.max(full.width, full.height, 2)));
  return {
    width: full.width, height: full.height, tileWidth: full.tile_width, tileHeight: full.tile_height, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels.length - 1)), maxLevel,
    getTileUrl: (level, x, y) => withToken(`/slides/${encodeURIComponent(name)}/tile/${maxLevel - level}/${y}/${x}.jpg`),
  };
}

async function openSlide(s) {
  $("slide-view").hidden = false;
  $("slide-name").textContent = s.name;
  $("slide-report").href = withToken(`/slides/${s.name}/report.html`);
  $("slide-report").hidden = !s.files.includes("report.html");
  $("slide-focusmap").hidden = !s.files.includes("focus_map.png");
  if (s.files.includes("focus_map.png")) $("slide-focusmap").src = withToken(`/slides/${s.name}/focus_map.png`);
  const info = window.deepaf.viewer = {name: s.name, loaded: 0, failed: 0, levels: []};
  if (viewer) { viewer.destroy(); viewer = null; }
  $("slide-canvas").replaceChildren();
  $("slide-level").textContent = s.slide ? "" : "not stitched";
  if (!s.slide) return;
  const r = await fetch(withToken(`/slides/${s.name}/levels`), {headers: headers()});
  if (!r.ok) { $("slide-level").textContent = (await r.json().catch(() => ({}))).error || r.statusText; return; }
  const levels = (await r.json()).levels;
  const halving = levels.every((L, k) => L.tile_width === levels[0].tile_width && L.tile_height === levels[0].tile_height &&
    L.width === Math.ceil(levels[0].width / 2 ** k) && L.height === Math.ceil(levels[0].height / 2 ** k));
  if (!halving) { $("slide-level").textContent = "this slide's levels do not halve: the viewer cannot show it"; return; }
  $("slide-level").textContent = `${levels[0].width} x ${levels[0].height} px, ${levels.length} levels`;
  viewer = OpenSeadragon({
    element: $("slide-canvas"), tileSources: tileSource(s.name, levels), drawer: "canvas",
    showNavigationControl: false, maxZoomPixelRatio: 2, visibilityRatio: 0.5, animationTime: 0.3,
  });
  viewer.addHandler("tile-loaded", e => { info.loaded += 1; info.levels.push(e.tile.level); });
  viewer.addHandler("tile-load-failed", () => { info.failed += 1; });
  window.deepaf.osd = viewer;
}

$("zoom-in").onclick = () => { if (viewer) viewer.viewport.zoomBy(2); };
$("zoom-out").onclick = () => { if (viewer) viewer.viewport.zoomBy(0.5); };
$("zoom-home").onclick = () => { if (viewer) viewer.viewport.goHome(); };

stream();
poll();
setInterval(poll, 400);
loadSlides();
