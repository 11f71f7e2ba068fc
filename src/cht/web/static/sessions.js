"use strict";
async function load() {
  const rows = await getJSON("/api/sessions");
  const body = $("rows"); body.replaceChildren();
  $("none").hidden = rows.length > 0;
  rows.sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
  for (const s of rows) {
    const tr = el("tr");
    const img = s.thumb ? el("img", { src: s.thumb, alt: "", loading: "lazy" }) : el("span");
    const link = el("a", { href: `/session/${encodeURIComponent(s.id)}` }, s.id);
    const behind = s.live && s.transcript_lag != null && s.transcript_lag >= 1 ? ` · transcript ${Math.round(s.transcript_lag)} s behind` : "";
    const state = el("span", { className: `badge ${s.live ? "live" : ""}` }, (s.live ? "LIVE" : s.state) + behind);
    const cells = [img, link, el("span", { className: "" }, s.source), el("span", {}, (s.started_at || "").replace("T", " ").slice(0, 19)),
      el("span", {}, fmt(s.duration)), state, el("span", {}, String(s.words))];
    cells.forEach((c, i) => { const td = el("td"); if (i === 2 || i === 6) td.className = "hide-narrow"; td.append(c); tr.append(td); });
    body.append(tr);
  }
}
$("q").addEventListener("keydown", async (e) => {
  if (e.key !== "Enter") return;
  const hits = await getJSON(`/api/search?q=${encodeURIComponent(e.target.value)}`);
  showHits(e.target, hits, (h) => { location.href = h.url; });
});
load(); setInterval(load, 5000);
