// detectkit labeling page: vanilla JS, no dependencies, nothing loaded from the internet.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token") || "";
  const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000"];
  const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];
  const S = {
    // the image list is fetched in windows of PAGE rows and only the rows in view are in the
    // DOM: rows maps an index in the (filtered) list to {idx, pos, id, name, state, boxes, gen};
    // gen changes when the list does (a filter, a save that moves an image out of it)
    classes: [], rows: new Map(), total: 0, gen: 0, loading: new Set(), filter: "", cur: null,
    labels: null, undo: [], redo: [], sel: -1, cls: 0, view: { k: 1, x: 0, y: 0 },
    saving: false, pending: false, drag: null, space: false, items: [], threshold: 0, mouse: null,
  };
  const ROW = 22, PAGE = 200;
  const view = $("view"), stage = $("stage"), img = $("image"), layer = $("boxes");

  async function api(path, opts = {}) {
    const headers = { "X-Detectkit-Token": token };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch("api/" + path, { method: opts.method || "GET", headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const data = await r.json().catch(() => ({}));
    return { status: r.status, data };
  }
  const color = (label) => COLORS[Math.max(0, S.classes.indexOf(label)) % COLORS.length];
  const status = (text, error) => { const el = $("status"); el.textContent = text; el.classList.toggle("error", !!error); };
  const copy = (boxes) => boxes.map((b) => ({ ...b }));
  const W = () => S.labels.width || img.naturalWidth || 1;
  const H = () => S.labels.height || img.naturalHeight || 1;
  // a draft is a model's pre-label (source "model"); accepting or editing it makes it human
  const isDraft = (b) => b.source === "model";
  const shown = (b) => !isDraft(b) || (b.score == null ? 1 : b.score) >= S.threshold;
  const humanize = (b) => { delete b.source; delete b.score; delete b.model_version; return b; };
  const score = (b) => (b.score == null ? "" : " " + b.score.toFixed(2));

  // ------------------------------------------------------------------ the lists
  function renderClasses() {
    const ol = $("classes"); ol.textContent = "";
    S.classes.forEach((c, i) => {
      const li = document.createElement("li");
      li.style.setProperty("--c", color(c));
      li.className = i === S.cls ? "active" : "";
      li.innerHTML = `<span class="key">${i < 9 ? i + 1 : ""}</span><span class="swatch"></span>`;
      li.append(document.createTextNode(c)); li.dataset.cls = c;
      li.onclick = () => pickClass(i);
      ol.append(li);
    });
  }
  function renderChart(progress) {
    const chart = $("chart"); chart.textContent = "";
    const per = progress.boxes_per_class || {};
    const max = Math.max(1, ...Object.values(per));
    for (const [c, n] of Object.entries(per)) {
      const row = document.createElement("div"); row.className = "row"; row.dataset.cls = c;
      row.style.setProperty("--c", color(c));
      const name = document.createElement("span"); name.textContent = c;
      const bar = document.createElement("div"); bar.className = "bar"; bar.style.width = (100 * n / max) + "%";
      const num = document.createElement("span"); num.className = "n"; num.textContent = n;
      row.append(name, bar, num); chart.append(row);
    }
    const pre = progress.prelabeled || 0, drafts = progress.drafts || 0;
    $("count").textContent = `${progress.labeled + progress.reviewed} of ${progress.images} done (${progress.reviewed} reviewed) · ${pre} pre-labeled · ${progress.unlabeled} untouched · ${progress.skipped} skipped · ${progress.boxes} boxes` + (drafts ? ` · ${drafts} drafts` : "");
  }
  const q = (o) => "images?" + new URLSearchParams(o).toString();
  const rowsOf = (d, gen) => d.ids.map((id, k) => ({ idx: d.offset + k, pos: d.positions[k], id, name: d.names[k], state: d.states[k], boxes: d.boxes[k], gen }));
  async function fetchWindow(offset) {  // rows [offset, offset + PAGE) of the list into the cache
    const gen = S.gen, key = gen + ":" + offset;
    if (S.loading.has(key)) return false;
    S.loading.add(key);
    try {
      const r = await api(q({ state: S.filter, offset, limit: PAGE }));
      if (r.status !== 200 || gen !== S.gen) return false;
      S.total = r.data.total;
      for (const row of rowsOf(r.data, gen)) S.rows.set(row.idx, row);
      return r.data.ids.length > 0;
    } finally { S.loading.delete(key); }
  }
  function renderImages() {
    const ol = $("images");
    const first = Math.max(0, Math.floor(ol.scrollTop / ROW) - 5);
    const last = Math.min(S.total, first + Math.ceil((ol.clientHeight || 800) / ROW) + 10);
    const frag = document.createDocumentFragment(), missing = new Set();
    for (let i = first; i < last; i++) {
      const row = S.rows.get(i), li = document.createElement("li");
      frag.append(li);
      if (!row) { li.className = "loading"; missing.add(i - (i % PAGE)); continue; }
      li.dataset.index = i; li.dataset.id = row.id;
      const name = document.createElement("span"); name.textContent = row.name;
      const st = document.createElement("span"); st.className = "st " + row.state; st.textContent = row.state;
      li.append(name, st); li.onclick = () => go(row);
      if (S.cur && row.id === S.cur.id) li.className = "current";
    }
    // the rows out of view are margins (padding would not let the list shrink to the window)
    if (frag.firstChild) { frag.firstChild.style.marginTop = first * ROW + "px"; frag.lastChild.style.marginBottom = Math.max(0, S.total - last) * ROW + "px"; }
    ol.replaceChildren(frag);
    for (const offset of missing) fetchWindow(offset).then((added) => { if (added) renderImages(); });
  }
  function refreshList() { S.gen++; S.rows.clear(); renderImages(); }
  function markImage(row) {
    const li = $("images").querySelector(`li[data-id="${row.id}"]`); if (!li || !li.lastChild) return;
    const st = li.lastChild; st.className = "st " + row.state; st.textContent = row.state;
  }
  function ensureVisible(row) {
    if (row.gen !== S.gen) return;
    const ol = $("images"), top = row.idx * ROW;
    if (top < ol.scrollTop) ol.scrollTop = top;
    else if (top + ROW > ol.scrollTop + ol.clientHeight) ol.scrollTop = top + ROW - ol.clientHeight;
  }
  // the image before (-1) or after (1) the shown one in the list's order, among the filtered
  async function neighbor(step) {
    const cur = S.cur; if (!cur) return null;
    if (!S.filter && cur.gen === S.gen) { const row = S.rows.get(cur.idx + step); if (row) return row; }
    const where = step > 0 ? { at: cur.pos + 1, offset: 0 } : { at: cur.pos, offset: -1 };
    const r = await api(q({ state: S.filter, ...where, limit: 1 }));
    if (r.status !== 200 || !r.data.ids.length) return null;
    return rowsOf(r.data, S.gen)[0];
  }
  const step = async (n) => go(await neighbor(n));

  // ------------------------------------------------------------------ the image and its boxes
  function applyView() { stage.style.transform = `translate(${S.view.x}px, ${S.view.y}px) scale(${S.view.k})`; }
  function fit() {
    const r = view.getBoundingClientRect();
    const k = Math.min(r.width / W(), r.height / H()) * 0.96;
    S.view = { k, x: (r.width - W() * k) / 2, y: (r.height - H() * k) / 2 }; applyView();
  }
  function renderBoxes() {
    layer.textContent = "";
    const w = W(), h = H();
    S.labels.boxes.forEach((b, i) => {
      if (!shown(b)) return;
      const d = document.createElement("div");
      d.className = "box body" + (i === S.sel ? " selected" : "") + (isDraft(b) ? " draft" : "");
      d.dataset.index = i; d.dataset.label = b.label;
      d.style.setProperty("--c", color(b.label));
      d.style.left = b.top_x * w + "px"; d.style.top = b.top_y * h + "px";
      d.style.width = (b.bottom_x - b.top_x) * w + "px"; d.style.height = (b.bottom_y - b.top_y) * h + "px";
      const tag = document.createElement("span"); tag.className = "tag"; tag.textContent = b.label + (isDraft(b) ? score(b) : ""); d.append(tag);
      for (const hd of HANDLES) { const e = document.createElement("span"); e.className = "h " + hd; e.dataset.handle = hd; d.append(e); }
      layer.append(d);
    });
    const list = $("boxlist"); list.textContent = "";
    S.labels.boxes.forEach((b, i) => {
      if (!shown(b)) return;
      const li = document.createElement("li"); li.className = (i === S.sel ? "selected" : "") + (isDraft(b) ? " draft" : "");
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.setProperty("--c", color(b.label));
      const sel = document.createElement("select");
      for (const c of S.classes) { const o = document.createElement("option"); o.value = o.textContent = c; sel.append(o); }
      sel.value = b.label;
      sel.onchange = () => change(() => { humanize(S.labels.boxes[i]).label = sel.value; });
      const del = document.createElement("button"); del.textContent = "×"; del.title = "Delete / reject (Del, R)";
      del.onclick = () => { S.sel = i; removeSelected(); };
      li.append(sw, sel);
      if (isDraft(b)) {
        const tag = document.createElement("span"); tag.className = "score"; tag.textContent = "draft" + score(b);
        const ok = document.createElement("button"); ok.textContent = "✓"; ok.title = "Accept (A)"; ok.className = "accept";
        ok.onclick = () => acceptBoxes([i]);
        li.append(tag, ok);
      }
      li.append(del); li.onclick = (e) => { if (e.target === li) { S.sel = i; renderBoxes(); } };
      list.append(li);
    });
  }

  async function go(row) {
    if (!row) return;
    S.cur = row; S.sel = -1; S.undo = []; S.redo = []; $("conflict").hidden = true;
    for (const li of document.querySelectorAll("#images li.current")) li.className = "";
    const li = $("images").querySelector(`li[data-id="${row.id}"]`); if (li) li.className = "current";
    ensureVisible(row);
    const id = row.id;
    const r = await api("images/" + id);
    if (S.cur !== row) return;
    S.labels = r.data;
    const shown = new Promise((ok) => { img.onload = ok; img.onerror = ok; });
    img.src = `api/images/${id}/file?token=${encodeURIComponent(token)}`;
    await shown;
    if (S.cur !== row) return;
    stage.dataset.id = id; fit(); renderBoxes();
    status(`${row.name} · revision ${S.labels.revision}`);
    document.body.dataset.shown = id;
    window.dispatchEvent(new CustomEvent("detectkit:shown", { detail: id }));
    const next = !S.filter && row.gen === S.gen ? S.rows.get(row.idx + 1) : null;
    if (next) { const pre = new Image(); pre.src = `api/images/${next.id}/file?token=${encodeURIComponent(token)}`; }
  }

  // ------------------------------------------------------------------ changes and saving
  function change(mutate, state) {
    S.undo.push({ boxes: copy(S.labels.boxes), state: S.labels.state }); S.redo = [];
    mutate();
    if (state) S.labels.state = state;
    else if (["unlabeled", "prelabeled", "skipped"].includes(S.labels.state)) S.labels.state = "labeled";
    renderBoxes(); save();
  }
  function restore(from, to) {
    const snap = from.pop(); if (!snap) return;
    to.push({ boxes: copy(S.labels.boxes), state: S.labels.state });
    S.labels.boxes = snap.boxes; S.labels.state = snap.state; S.sel = -1; renderBoxes(); save();
  }
  async function save() {
    if (S.saving) { S.pending = true; return; }
    S.saving = true; status("Saving…");
    const row = S.cur, id = row.id;
    const body = { revision: S.labels.revision, state: S.labels.state, boxes: S.labels.boxes };
    const t0 = performance.now();
    try {
      const r = await api("images/" + id, { method: "PUT", body });
      window.dispatchEvent(new CustomEvent("detectkit:saved", { detail: { status: r.status, ms: performance.now() - t0 } }));
      if (r.status === 200) {
        if (S.cur.id === id) S.labels.revision = r.data.revision;
        setRow(row, r.data.state[0], r.data.boxes.length);
        renderChart(r.data.progress); status(`Saved · revision ${r.data.revision}`);
      } else if (r.status === 409) {
        S.pending = false;
        const cur = r.data.current;
        const box = $("conflict"); box.hidden = false;
        box.textContent = `Someone else saved this image (revision ${cur.revision}, ${cur.boxes.length} boxes); showing their edit instead of yours. ` + r.data.error.message;
        if (S.cur.id === id) { S.labels = { ...S.labels, ...cur }; S.undo = []; S.redo = []; S.sel = -1; renderBoxes(); }
        setRow(row, cur.state[0], cur.boxes.length);
        const pr = await api("progress"); if (pr.status === 200) renderChart(pr.data);
        status("Conflict: showing the other edit", true);
      } else {
        status("Not saved: " + ((r.data.error && r.data.error.message) || r.status), true);
      }
    } catch (e) {
      status("Not saved (is the server running?): " + e, true);
    } finally {
      S.saving = false;
      if (S.pending) { S.pending = false; save(); }
    }
  }
  // a saved image's state and box count, in the list (reloaded when it leaves the filter)
  function setRow(row, state, boxes) {
    const changed = row.state !== state;
    const cached = row.gen === S.gen ? S.rows.get(row.idx) : null;
    for (const r of [row, cached]) if (r && r.id === row.id) { r.state = state; r.boxes = boxes; }
    if (changed && S.filter) refreshList(); else markImage(row);
  }
  function removeSelected() {
    if (S.sel < 0) return;
    const k = S.sel; S.sel = -1; change(() => S.labels.boxes.splice(k, 1));
  }
  function pickClass(i) {
    if (i >= S.classes.length) return;
    S.cls = i; renderClasses();
    if (S.sel >= 0 && S.labels.boxes[S.sel].label !== S.classes[i]) change(() => { humanize(S.labels.boxes[S.sel]).label = S.classes[i]; });
  }
  // the shown box under the pointer (the smallest when nested), else the selected one
  function boxAt() {
    const p = S.mouse; let best = -1, area = Infinity;
    if (p) S.labels.boxes.forEach((b, i) => {
      const a = (b.bottom_x - b.top_x) * (b.bottom_y - b.top_y);
      if (shown(b) && p.x >= b.top_x && p.x <= b.bottom_x && p.y >= b.top_y && p.y <= b.bottom_y && a < area) { best = i; area = a; }
    });
    return best >= 0 ? best : S.sel;
  }
  function acceptBoxes(which) {
    const todo = which.filter((k) => k >= 0 && isDraft(S.labels.boxes[k]));
    if (todo.length) change(() => { for (const k of todo) humanize(S.labels.boxes[k]); });
  }
  const acceptAll = () => acceptBoxes(S.labels.boxes.map((b, k) => (isDraft(b) && shown(b) ? k : -1)));
  function rejectAt() { const k = boxAt(); if (k >= 0) { S.sel = k; removeSelected(); } }
  async function setState(state, step) {
    if (S.labels.state !== state) change(() => {}, state);
    await go(await neighbor(step));
  }

  // ------------------------------------------------------------------ the mouse
  function point(e) {
    const r = view.getBoundingClientRect();
    const x = (e.clientX - r.left - S.view.x) / S.view.k / W(), y = (e.clientY - r.top - S.view.y) / S.view.k / H();
    return { x: Math.min(1, Math.max(0, x)), y: Math.min(1, Math.max(0, y)) };
  }
  view.addEventListener("pointerdown", (e) => {
    if (!S.labels) return;
    view.setPointerCapture(e.pointerId);
    if (S.space || e.button === 1) { S.drag = { mode: "pan", x: e.clientX, y: e.clientY, v: { ...S.view } }; return; }
    if (e.button !== 0) return;
    const p = point(e), before = copy(S.labels.boxes);
    const handle = e.target.dataset && e.target.dataset.handle;
    const boxEl = e.target.closest && e.target.closest(".box");
    if (boxEl) {
      S.sel = +boxEl.dataset.index; renderBoxes();
      S.drag = { mode: handle || "move", p, b: { ...S.labels.boxes[S.sel] }, before };
    } else {
      S.sel = -1;
      S.drag = { mode: "draw", p, before };
    }
    e.preventDefault();
  });
  view.addEventListener("pointermove", (e) => {
    if (S.labels) S.mouse = point(e);
    const d = S.drag; if (!d) return;
    if (d.mode === "pan") { S.view.x = d.v.x + e.clientX - d.x; S.view.y = d.v.y + e.clientY - d.y; applyView(); return; }
    const p = point(e);
    if (d.mode === "draw") {
      const b = { label: S.classes[S.cls], top_x: Math.min(d.p.x, p.x), top_y: Math.min(d.p.y, p.y), bottom_x: Math.max(d.p.x, p.x), bottom_y: Math.max(d.p.y, p.y) };
      if (d.index === undefined) { d.index = S.labels.boxes.length; S.labels.boxes.push(b); } else S.labels.boxes[d.index] = b;
      S.sel = d.index; renderBoxes(); return;
    }
    const b = { ...d.b }, dx = p.x - d.p.x, dy = p.y - d.p.y;
    if (d.mode === "move") {
      const w = b.bottom_x - b.top_x, h = b.bottom_y - b.top_y;
      b.top_x = Math.min(1 - w, Math.max(0, b.top_x + dx)); b.top_y = Math.min(1 - h, Math.max(0, b.top_y + dy));
      b.bottom_x = b.top_x + w; b.bottom_y = b.top_y + h;
    } else {
      if (d.mode.includes("w")) b.top_x = Math.min(b.bottom_x - 0.001, Math.max(0, b.top_x + dx));
      if (d.mode.includes("e")) b.bottom_x = Math.max(b.top_x + 0.001, Math.min(1, b.bottom_x + dx));
      if (d.mode.includes("n")) b.top_y = Math.min(b.bottom_y - 0.001, Math.max(0, b.top_y + dy));
      if (d.mode.includes("s")) b.bottom_y = Math.max(b.top_y + 0.001, Math.min(1, b.bottom_y + dy));
    }
    if (["top_x", "top_y", "bottom_x", "bottom_y"].some((f) => b[f] !== d.b[f])) humanize(b);  // an edited draft is human
    S.labels.boxes[S.sel] = b; renderBoxes();
  });
  view.addEventListener("pointerleave", () => { S.mouse = null; });
  view.addEventListener("pointerup", () => {
    const d = S.drag; S.drag = null; if (!d || d.mode === "pan") return;
    if (d.mode === "draw") {
      if (d.index === undefined) { renderBoxes(); return; }
      const b = S.labels.boxes[d.index];
      if ((b.bottom_x - b.top_x) * W() < 3 || (b.bottom_y - b.top_y) * H() < 3) { S.labels.boxes.splice(d.index, 1); S.sel = -1; renderBoxes(); return; }
    }
    if (JSON.stringify(d.before) === JSON.stringify(S.labels.boxes)) return;
    const after = copy(S.labels.boxes); S.labels.boxes = d.before;
    change(() => { S.labels.boxes = after; });
  });
  view.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = view.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    const k = Math.min(40, Math.max(0.05, S.view.k * (e.deltaY < 0 ? 1.2 : 1 / 1.2)));
    S.view.x = mx - (mx - S.view.x) * k / S.view.k; S.view.y = my - (my - S.view.y) * k / S.view.k; S.view.k = k; applyView();
  }, { passive: false });

  // ------------------------------------------------------------------ the keyboard
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); e.shiftKey ? restore(S.redo, S.undo) : restore(S.undo, S.redo); return; }
    if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); restore(S.redo, S.undo); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[1-9]$/.test(e.key)) pickClass(+e.key - 1);
    else if (key === "delete" || key === "backspace") removeSelected();
    else if (e.key === "A" || (key === "a" && e.shiftKey)) acceptAll();
    else if (key === "a") acceptBoxes([boxAt()]);
    else if (key === "r") rejectAt();
    else if (key === "v") setState("reviewed", 1);
    else if (key === "n" || key === "arrowright") step(1);
    else if (key === "p" || key === "arrowleft") step(-1);
    else if (key === "k") setState("skipped", 1);
    else if (key === "enter") setState("labeled", 1);
    else if (key === "f") fit();
    else if (key === "escape") { S.sel = -1; renderBoxes(); }
    else if (key === "+" || key === "=" || key === "-") { S.view.k *= key === "-" ? 1 / 1.25 : 1.25; applyView(); }
    else if (key === " ") { S.space = true; view.classList.add("panning"); }
    else return;
    e.preventDefault();
  });
  document.addEventListener("keyup", (e) => { if (e.key === " ") { S.space = false; view.classList.remove("panning"); } });

  $("prev").onclick = () => step(-1);
  $("next").onclick = () => step(1);
  $("skip").onclick = () => setState("skipped", 1);
  $("done").onclick = () => setState("labeled", 1);
  $("reviewed").onclick = () => setState("reviewed", 1);
  $("acceptall").onclick = acceptAll;
  $("threshold").oninput = (e) => { S.threshold = +e.target.value; $("thresholdvalue").textContent = S.threshold.toFixed(2); if (S.labels) renderBoxes(); };
  $("threshold").onchange = (e) => e.target.blur();
  $("undo").onclick = () => restore(S.undo, S.redo);
  $("redo").onclick = () => restore(S.redo, S.undo);
  $("fit").onclick = fit;
  $("filter").onchange = async (e) => {
    S.filter = e.target.value; S.gen++; S.rows.clear(); $("images").scrollTop = 0;
    await fetchWindow(0); renderImages();
  };
  let listFrame = 0;
  $("images").addEventListener("scroll", () => {
    if (!listFrame) listFrame = requestAnimationFrame(() => { listFrame = 0; renderImages(); });
  });
  $("export").onclick = async () => {
    status("Exporting…");
    const r = await api("export", { method: "POST", body: {} });
    status(r.status === 200 ? r.data.message : "Export failed: " + (r.data.error || {}).message, r.status !== 200);
  };
  window.addEventListener("resize", () => S.labels && fit());

  // ------------------------------------------------------------------ start
  // the first image still to label and the list's first window: neither grows with the project
  (async () => {
    const [p, todo, list] = await Promise.all([api("project"), api(q({ state: "up", limit: 1 })), api(q({ offset: 0, limit: PAGE }))]);
    if (p.status !== 200) { status(p.data.error ? p.data.error.message : "no access", true); return; }
    S.classes = p.data.classes; $("project").textContent = p.data.name;
    $("instructions").textContent = p.data.instructions || "";
    $("export").hidden = !p.data.can_export;
    S.total = list.data.total;
    for (const row of rowsOf(list.data, S.gen)) S.rows.set(row.idx, row);
    renderClasses(); renderChart(p.data.progress); renderImages();
    let first = todo.status === 200 && todo.data.ids.length ? rowsOf(todo.data, S.gen)[0] : S.rows.get(0);
    if (first) { first.idx = first.pos; first = S.rows.get(first.idx) || first; }  // unfiltered: index = position
    await go(first);
  })();

  // ------------------------------------------------------------------ the background model
  // ML assistance: the trainer's state, polled (faster while it works); null when it is off
  const ASSIST = { idle: "waiting for labels", training: "training…", prelabeling: "pre-labeling…", ready: "ready", failed: "failed" };
  (async function pollAssistant() {
    const r = await api("assistant");
    const a = r.status === 200 ? r.data : null, el = $("assistant");
    if (!a) return;
    const map = a.map == null ? "" : ` · val mAP ${a.map.toFixed(2)}`;
    const when = a.finished ? ` · ${new Date(a.finished).toLocaleTimeString()}` : "";
    const idle = a.state === "idle" ? ` (${a.min_labeled} labeled images)` : "";
    el.hidden = false; el.dataset.state = a.state; el.classList.toggle("error", a.state === "failed");
    el.textContent = `model: ${ASSIST[a.state] || a.state}${idle}${map}${when}`;
    el.title = a.error || (a.run ? `run ${a.run}, ${a.drafted} images pre-labeled` : "");
    setTimeout(pollAssistant, a.state === "training" || a.state === "prelabeling" ? 1500 : 4000);
  })();
})();
