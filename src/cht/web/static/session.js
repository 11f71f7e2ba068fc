"use strict";
// One global timeline: the recorded segments play as one programme; the waveform, keyframes
// and transcript all seek the player; a websocket keeps everything growing while it records.
const ID = decodeURIComponent(location.pathname.split("/").pop());
const LEVELS = [160, 1600, 16000];  // samples per pixel at 16 kHz: 100, 10, 1 pixels a second
const video = $("video"), canvas = $("wave"), ctx = canvas.getContext("2d");
const S = {
  manifest: { segments: [], gaps: [], duration: 0 }, frames: [], chapters: [], lines: new Map(), live: false, state: "",
  seg: -1, follow: false, view: [0, 0], userView: false, peaks: new Map(), loading: new Set(),
  seq: 0, seqs: [], ws: null, retry: 0, autoscroll: true, speakers: { speakers: [], turns: [] }, speakersJSON: "",
};
window.cht = { globalTime, seek, get lastSeq() { return S.seq; }, get seqs() { return S.seqs; }, state: S };

// ---- the player: global time <-> (segment, local time) ----
function segments() { return S.manifest.segments; }
function segEnd(s) { return s.global_start + s.duration; }
function globalTime() { const s = segments()[S.seg]; return s ? s.global_start + video.currentTime : 0; }
function segmentAt(t) {
  const segs = segments();
  for (let i = 0; i < segs.length; i++) if (t < segEnd(segs[i]) - 0.05) return [i, Math.max(t, segs[i].global_start)];
  return [segs.length - 1, segs.length ? Math.max(segs[segs.length - 1].global_start, segEnd(segs[segs.length - 1]) - 1) : 0];
}
function segUrl(i, fresh) { return `/media/${encodeURIComponent(ID)}/${segments()[i].file}` + (fresh ? `?v=${Date.now()}` : ""); }
function seek(t, play) {
  if (!segments().length) return;
  const [i, at] = segmentAt(t);
  const local = at - segments()[i].global_start;
  const growing = S.live && i === segments().length - 1;
  const wasPlaying = play ?? !video.paused;
  if (i !== S.seg || (growing && local > (video.duration || 0) - 0.5)) {
    S.seg = i; video.src = segUrl(i, growing);
    video.addEventListener("loadedmetadata", () => { video.currentTime = local; if (wasPlaying) video.play().catch(() => {}); }, { once: true });
  } else {
    video.currentTime = local; if (wasPlaying) video.play().catch(() => {});
  }
  tick();
}
video.addEventListener("ended", () => {
  if (S.seg < segments().length - 1) seek(segments()[S.seg + 1].global_start, true);  // across a gap: next segment
  else if (S.live) setTimeout(() => seek(globalTime(), true), 700);  // the live edge: fetch what has grown
});
function goLive() { S.follow = true; $("liveBtn").classList.add("on"); seek(Math.max(0, S.manifest.duration - 2.5), true); }
function leaveLive() { S.follow = false; $("liveBtn").classList.remove("on"); }

// ---- loading ----
async function loadSession() {
  const data = await getJSON(`/api/sessions/${encodeURIComponent(ID)}`);
  S.manifest = data.manifest; S.live = data.live; S.seq = Math.max(S.seq, data.seq);
  S.state = data.live || data.manifest.state === "recording" ? "recording" : data.manifest.state;
  // Keyframes (and their text) that came as events while this was fetched stay: replaced
  // by the older list, a capture made meanwhile would lose its thumbnail and its text.
  const listed = new Set(data.frames.map((f) => f.url)), known = new Map(S.frames.map((f) => [f.url, f]));
  for (const f of data.frames) f.text = f.text || known.get(f.url)?.text || "";
  S.frames = [...data.frames, ...S.frames.filter((f) => !listed.has(f.url))]; S.chapters = data.chapters || [];
  for (const line of data.transcript) S.lines.set(line.chunk, line);
  if (data.speakers) { S.speakers = data.speakers; S.speakersJSON = JSON.stringify(data.speakers); }
  document.title = `cht · ${ID}`; $("title").textContent = ID;
  $("capture").hidden = $("liveBtn").hidden = !S.live;
  renderThumbs(); renderChapters(); renderTranscript(); status();
  if (!S.userView) S.view = [0, Math.max(10, S.manifest.duration)];
  draw();
}
function applyManifest(m) { S.manifest = m; if (S.seg < 0 && m.segments.length) seek(0, false); status(); draw(); }

// ---- transcript ----
function renderTranscript() {
  const pane = $("transcript"); const lines = [...S.lines.values()].sort((a, b) => a.start - b.start);
  pane.replaceChildren(); if (!lines.length) { pane.append(el("div", { className: "empty" }, "No transcript yet.")); return; }
  for (const line of lines) pane.append(lineEl(line));
  if (S.live && S.autoscroll) pane.scrollTop = pane.scrollHeight;
}
function lineEl(line) {
  const row = el("div", { className: `line${line.final ? "" : " draft"}` });
  row.dataset.chunk = line.chunk; row.dataset.start = line.start; row.dataset.end = line.end;
  const said = el("span", { className: "said" });
  const runs = speakerRuns(line);
  for (const run of runs) {
    const part = el("span", { className: "run" });
    if (run.label) part.append(speakerChip(run.label));
    part.append(document.createTextNode(runs.length === 1 ? line.text : run.text));
    said.append(part);
  }
  row.append(el("time", {}, fmt(line.start)), said);
  row.addEventListener("click", () => { leaveLive(); seek(line.start, true); });
  return row;
}

// ---- speakers: labels from speakers.json turns, the same rule as cht.speakers.attribute ----
const NEAR_S = 1.5;
function speakerAt(t) {
  let best = "", distance = NEAR_S;
  for (const [a, b, label] of S.speakers.turns) {
    const d = a <= t && t <= b ? 0 : Math.min(Math.abs(t - a), Math.abs(t - b));
    if (d <= distance) { best = label; distance = d; }
  }
  return best;
}
function speakerRuns(line) {
  if (!S.speakers.turns.length) return [{ label: "", text: line.text }];
  const words = line.words && line.words.length ? line.words : [{ start: line.start, end: line.end, word: line.text }];
  let labels = words.map((w) => speakerAt((w.start + w.end) / 2));
  let known = labels.find((x) => x) || "";
  labels = labels.map((x) => (known = x || known));
  const runs = [];
  words.forEach((w, i) => {
    if (runs.length && runs[runs.length - 1].label === labels[i]) runs[runs.length - 1].text += w.word;
    else runs.push({ label: labels[i], text: w.word });
  });
  for (const r of runs) r.text = r.text.trim();
  return runs;
}
function speakerChip(label) {
  const who = S.speakers.speakers.find((s) => s.id === label) || { id: label, name: "", color: "#8a94a3" };
  const chip = el("b", { className: "who", title: `${label}: click to name` }, who.name || label);
  chip.dataset.speaker = label; chip.style.color = who.color;
  chip.addEventListener("click", (e) => { e.stopPropagation(); renameSpeaker(label, who.name); });
  return chip;
}
async function renameSpeaker(label, current) {
  const name = prompt(`Name for ${label} (empty: back to ${label})`, current || "");
  if (name === null) return;
  try {
    const data = await getJSON(`/api/sessions/${encodeURIComponent(ID)}/speakers/${encodeURIComponent(label)}`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }) });
    setSpeakers(data);
  } catch (err) { toast(`rename failed: ${err.message}`); }
}
function setSpeakers(data) {
  const text = JSON.stringify(data);
  if (text === S.speakersJSON) return;
  S.speakers = data; S.speakersJSON = text; renderTranscript();
}
async function refreshSpeakers() {
  try { setSpeakers(await getJSON(`/api/sessions/${encodeURIComponent(ID)}/speakers`)); } catch (err) { /* next time */ }
}
// live: labels follow the committed words within seconds, and are refined when the session stops
setInterval(() => { if (S.live || S.state === "recording") refreshSpeakers(); }, 3000);
function upsertLine(line) {
  const known = S.lines.get(line.chunk);
  if (known && known.final && !line.final) return;  // a late draft never replaces the final text
  S.lines.set(line.chunk, line);
  const pane = $("transcript"); const old = pane.querySelector(`.line[data-chunk="${line.chunk}"]`);
  const row = lineEl(line);
  if (old) old.replaceWith(row);
  else {
    pane.querySelector(".empty")?.remove();
    const after = [...pane.children].find((r) => Number(r.dataset.start) > line.start);
    pane.insertBefore(row, after || null);
  }
  if (S.live && S.autoscroll) pane.scrollTop = pane.scrollHeight;
}
$("transcript").addEventListener("scroll", (e) => { const p = e.target; S.autoscroll = p.scrollTop + p.clientHeight >= p.scrollHeight - 30; });

// ---- keyframes ----
// Each thumbnail with the text read off it underneath (selectable: a click on the text
// selects, a click on the picture seeks).
function renderThumbs() { const strip = $("thumbs"); strip.replaceChildren(); for (const f of S.frames) strip.append(thumbEl(f)); }
function thumbEl(f) {
  const fig = el("figure", { className: "kf" });
  const img = el("img", { src: f.thumb, alt: `Keyframe at ${fmt(f.t)}`, title: fmt(f.t), loading: "lazy" });
  img.addEventListener("click", () => { leaveLive(); seek(f.t, true); });
  fig.dataset.t = f.t; fig.append(img, el("figcaption", { className: "kftext" }, f.text || ""));
  return fig;
}
function setFrameText(file, text) {
  const name = file.split("/").pop(), i = S.frames.findIndex((f) => f.url.endsWith(`/${name}`));
  if (i < 0) return;
  S.frames[i].text = text; $("thumbs").children[i]?.querySelector("figcaption")?.replaceChildren(text);
}
// Chapters: one per new slide title; a click seeks to it.
function renderChapters() {
  const nav = $("chapters"); nav.replaceChildren(); nav.hidden = !S.chapters.length;
  for (const c of S.chapters) {
    const b = el("button", { className: "chapter", title: `${fmt(c.start)} – ${fmt(c.end)}` });
    b.dataset.start = c.start; b.append(el("time", {}, fmt(c.start)), ` ${c.title}`);
    b.addEventListener("click", () => { leaveLive(); seek(c.start, true); }); nav.append(b);
  }
}
async function refreshChapters() {
  const data = await getJSON(`/api/sessions/${encodeURIComponent(ID)}`); S.chapters = data.chapters || []; renderChapters();
}

// ---- waveform ----
function levelFor(seconds) {
  const pxPerS = canvas.clientWidth / Math.max(seconds, 0.001);
  for (const spp of [...LEVELS].reverse()) if (16000 / spp >= pxPerS) return spp;
  return LEVELS[0];
}
function peaksOf(spp) { if (!S.peaks.has(spp)) S.peaks.set(spp, []); return S.peaks.get(spp); }
async function fetchPeaks(spp, first, last) {
  const block = 4096, b0 = Math.floor(first / block), b1 = Math.floor(last / block);
  for (let b = b0; b <= b1; b++) {
    const key = `${spp}:${b}`; if (S.loading.has(key)) continue; S.loading.add(key);
    getJSON(`/api/sessions/${encodeURIComponent(ID)}/peaks?spp=${spp}&start=${b * block}&end=${(b + 1) * block}`).then((r) => {
      const arr = peaksOf(spp); for (let i = 0; i < r.data.length; i++) arr[2 * r.start + i] = r.data[i];
      if (r.data.length < 2 * block) S.loading.delete(key);  // a partial block grows: ask again later
      draw();
    }).catch(() => S.loading.delete(key));
  }
}
function draw() {
  const w = canvas.clientWidth, h = canvas.clientHeight, dpr = window.devicePixelRatio || 1;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0); ctx.clearRect(0, 0, w, h);
  const [v0, v1] = S.view, span = Math.max(v1 - v0, 0.001), x = (t) => (t - v0) / span * w;
  ctx.fillStyle = "#eef0f3";
  for (const g of S.manifest.gaps) ctx.fillRect(x(g.start), 0, Math.max(1, x(g.end) - x(g.start)), h);
  const spp = levelFor(span), pps = 16000 / spp, arr = peaksOf(spp);
  const first = Math.floor(v0 * pps), last = Math.ceil(v1 * pps);
  fetchPeaks(spp, first, last);
  ctx.fillStyle = "#5b8def"; const mid = h / 2; let drawnPeaks = false;
  for (let col = 0; col < w; col++) {
    const p0 = Math.floor(first + (col / w) * (last - first)), p1 = Math.max(p0 + 1, Math.floor(first + ((col + 1) / w) * (last - first)));
    let lo = 0, hi = 0, any = false;
    for (let p = p0; p < p1; p++) { const a = arr[2 * p], b = arr[2 * p + 1]; if (a === undefined) continue; any = true; lo = Math.min(lo, a); hi = Math.max(hi, b); }
    if (any) { drawnPeaks = true; ctx.fillRect(col, mid - (hi / 128) * mid, 1, Math.max(1, ((hi - lo) / 128) * mid)); }
  }
  if (drawnPeaks) window.cht.drawnWithPeaks = true;
  ctx.fillStyle = "#d1242f88"; for (const f of S.frames) { const fx = x(f.t); if (fx >= 0 && fx <= w) ctx.fillRect(fx, 0, 1.5, h); }
  if (S.selection) { ctx.fillStyle = "#f2a10033"; ctx.fillRect(x(S.selection[0]), 0, x(S.selection[1]) - x(S.selection[0]), h); }
  ctx.fillStyle = "#1d232b"; ctx.fillRect(x(globalTime()), 0, 2, h);
  $("viewLabel").textContent = `${fmt(v0)} – ${fmt(v1)}`;
  window.cht.drawn = performance.now();
}
// A click seeks; a drag selects a range to download as a clip (`cht clip`).
function timeAt(e) { const r = canvas.getBoundingClientRect(); return S.view[0] + (e.clientX - r.left) / r.width * (S.view[1] - S.view[0]); }
let dragFrom = null, dragged = false;
canvas.addEventListener("pointerdown", (e) => { dragFrom = { x: e.clientX, t: timeAt(e) }; dragged = false; canvas.setPointerCapture(e.pointerId); });
canvas.addEventListener("pointermove", (e) => {
  if (!dragFrom || (!dragged && Math.abs(e.clientX - dragFrom.x) < 5)) return;
  dragged = true; const t = timeAt(e); S.selection = [Math.max(0, Math.min(dragFrom.t, t)), Math.max(dragFrom.t, t)]; draw();
});
canvas.addEventListener("pointerup", () => {
  dragFrom = null; if (!dragged || !S.selection) return;
  const [a, b] = S.selection, link = $("clipLink");
  link.href = `/api/sessions/${encodeURIComponent(ID)}/clip?from=${a.toFixed(2)}&to=${b.toFixed(2)}`;
  link.textContent = `Download clip ${fmt(a)} – ${fmt(b)}`; link.hidden = false;
});
canvas.addEventListener("click", (e) => {
  if (dragged) { dragged = false; return; }
  leaveLive(); seek(timeAt(e), true);
});
function zoom(factor) {
  const [v0, v1] = S.view, centre = Math.min(Math.max(globalTime(), v0), v1), span = Math.max(2, (v1 - v0) * factor);
  const start = Math.max(0, centre - span / 2); S.view = [start, start + span]; S.userView = true; draw();
}
$("zoomIn").addEventListener("click", () => zoom(0.5)); $("zoomOut").addEventListener("click", () => zoom(2));
window.addEventListener("resize", draw);

// ---- status, ticking ----
function status() {
  const badge = $("state"); badge.textContent = S.state; badge.className = `badge ${S.state}`;
  $("duration").textContent = fmt(S.manifest.duration);
}
function tick() {
  const t = globalTime(); let current = null;
  $("momentLink").href = `/session/${encodeURIComponent(ID)}?t=${Math.round(t)}`;
  for (const row of $("transcript").children) {
    const on = Number(row.dataset.start) <= t && t < Number(row.dataset.end) + 0.3;
    row.classList.toggle("current", on); if (on) current = row;
  }
  if (current && !video.paused && !S.follow) current.scrollIntoView({ block: "nearest" });
  let shown = null; for (const fig of $("thumbs").children) if (Number(fig.dataset.t) <= t) shown = fig;
  for (const fig of $("thumbs").children) fig.classList.toggle("current", fig === shown);
  let chapter = null; for (const b of $("chapters").children) if (Number(b.dataset.start) <= t) chapter = b;
  for (const b of $("chapters").children) b.classList.toggle("current", b === chapter);
  draw();
}
video.addEventListener("timeupdate", tick);

// ---- live events ----
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/${encodeURIComponent(ID)}?since=${S.seq}`);
  S.ws = ws;
  ws.onopen = () => { S.retry = 0; };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
  ws.onclose = () => { if (S.live) setTimeout(connect, Math.min(5000, 500 * 2 ** S.retry++)); };
}
function handle(e) {
  if (e.type === "NotLive") { S.live = false; followFiles(); return; }
  if (e.type === "Resync") { S.seq = e.seq; loadSession(); return; }
  if (e.seq <= S.seq) return;  // already seen: a replay after reconnecting
  S.seq = e.seq; S.seqs.push(e.seq);
  switch (e.type) {
    case "DurationChanged": case "LiveTick": {
      S.manifest.duration = e.duration ?? e.t;
      const last = segments()[segments().length - 1];
      if (last) last.duration = Math.max(last.duration, S.manifest.duration - last.global_start);
      if (!S.userView) S.view = [0, Math.max(10, S.manifest.duration)];
      status(); draw(); break;
    }
    case "SegmentStarted": case "ManifestUpdated": case "RecorderRestarted":
      if (e.type === "RecorderRestarted") { S.state = "restarting"; status(); }
      getJSON(`/api/sessions/${encodeURIComponent(ID)}`).then((d) => { if (e.type !== "RecorderRestarted") S.state = d.live ? "recording" : d.manifest.state; applyManifest(d.manifest); });
      break;
    case "SceneDetected":
      if (!S.frames.some((f) => Math.abs(f.t - e.t) < 1e-3)) {
        const f = { t: e.t, kind: e.kind, url: `/media/${encodeURIComponent(ID)}/frames/${e.file.split("/").pop()}`, thumb: `/media/${encodeURIComponent(ID)}/frames/${e.thumb.split("/").pop()}` };
        S.frames.push(f); $("thumbs").append(thumbEl(f)); draw();
      }
      break;
    case "SlideTextRead":
      setFrameText(e.slide.file, e.slide.lines.map((l) => l.text).join("\n"));
      if (e.slide.title) refreshChapters().catch(() => {});
      break;
    case "WaveformUpdated": {
      const arr = peaksOf(e.samples_per_pixel); for (let i = 0; i < e.data.length; i++) arr[2 * e.start + i] = e.data[i];
      break;
    }
    case "TranscriptSegments": for (const line of e.lines) upsertLine({ ...line, final: e.final }); break;
    case "TranscriptLag": $("lag").textContent = e.lag_s >= 1 ? `transcript lag ${Math.round(e.lag_s)} s` : ""; break;
    case "Warning": toast(e.message); break;
    case "SessionStopped": S.live = false; S.state = e.state; status(); leaveLive(); $("capture").hidden = $("liveBtn").hidden = true;
      refreshSpeakers(); break;
  }
  if (S.follow && video.paused === false && S.manifest.duration - globalTime() > 8) seek(S.manifest.duration - 2.5, true);
}
// A session recorded by another process (`cht serve` beside `cht record`): no bus here, so
// follow its files instead, every few seconds, until it stops.
function followFiles() {
  if (S.state !== "recording" || S.polling) return;
  S.polling = setInterval(async () => {
    await loadSession();
    if (S.manifest.state !== "recording") { clearInterval(S.polling); S.polling = null; }
  }, 3000);
}
function toast(text) { const t = $("toast"); t.textContent = text; t.style.display = "block"; setTimeout(() => { t.style.display = "none"; }, 5000); }

// ---- controls ----
$("liveBtn").addEventListener("click", () => (S.follow ? leaveLive() : goLive()));
$("capture").addEventListener("click", async () => {
  try { const r = await getJSON(`/api/sessions/${encodeURIComponent(ID)}/capture`, { method: "POST" }); toast(`captured at ${fmt(r.t)}`); }
  catch (err) { toast(`capture failed: ${err.message}`); }
});
$("q").addEventListener("keydown", async (e) => {
  if (e.key !== "Enter" || !e.target.value.trim()) return;
  const hits = await getJSON(`/api/search?q=${encodeURIComponent(e.target.value)}&session=${encodeURIComponent(ID)}`);
  if (hits.length) { leaveLive(); seek(hits[0].t, true); }
  showHits(e.target, hits, (h) => { leaveLive(); seek(h.t, true); });
});
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") return;
  if (e.code === "Space") { e.preventDefault(); video.paused ? video.play() : video.pause(); }
  else if (e.key === "ArrowLeft") { leaveLive(); seek(globalTime() - 5); }
  else if (e.key === "ArrowRight") { leaveLive(); seek(globalTime() + 5); }
  else if (e.key === "l" || e.key === "L") goLive();
});
video.addEventListener("seeking", tick);
setInterval(() => { if (!video.paused) tick(); }, 250);

(async () => {
  await loadSession();
  const wanted = Number(new URLSearchParams(location.search).get("t"));
  if (segments().length) { if (S.live && !wanted) goLive(); else seek(wanted || 0, false); }
  if (S.live) connect(); else followFiles();
  window.cht.ready = true;
})();
