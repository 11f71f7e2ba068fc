"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (s) => { s = Math.max(0, Math.floor(s)); return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`; };
async function getJSON(url, options) { const r = await fetch(url, options); if (!r.ok) throw new Error(`${url}: ${r.status}`); return r.json(); }
function el(tag, props = {}, text) { const e = document.createElement(tag); Object.assign(e, props); if (text !== undefined) e.textContent = text; return e; }
function showHits(input, hits, onPick) {
  const box = $("hits"); box.replaceChildren();
  const r = input.getBoundingClientRect(); box.style.top = `${r.bottom + window.scrollY + 4}px`; box.style.left = `${Math.max(8, r.right - 520)}px`;
  if (!hits.length) { box.append(el("div", { className: "empty" }, "No match.")); }
  for (const h of hits) {
    const when = h.kind === "slide" ? `on slide at ${fmt(h.t)}` : fmt(h.t);
    const who = h.speaker ? `<b class="who">${h.speaker.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")}:</b> ` : "";
    const row = el("div"); row.innerHTML = `<b>${h.session}</b> ${when} · ${who}${h.snippet}`;
    row.dataset.kind = h.kind || "speech";
    row.addEventListener("click", () => { box.hidden = true; onPick(h); }); box.append(row);
  }
  box.hidden = false;
}
document.addEventListener("click", (e) => { const box = $("hits"); if (box && !box.contains(e.target)) box.hidden = true; });
