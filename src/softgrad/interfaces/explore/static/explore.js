// softgrad explore: the page only draws. Every number comes from the server's JSON API
// (docs/explore.md); nothing here computes softmax or a derivative.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_SLIDERS = 16;
const CHART_MAX_BARS = 512;

const state = {
  logits: [], temperature: 1, target: 0, layerX: [], layer: null, topic: "softmax", topics: [], limits: { jacobian_auto_n: 128 }, info: null,
};
let sliderRange = null; // [lo, hi] of the sliders, kept while they are dragged

// ---- talking to the server -------------------------------------------------------------

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, error: "the server is not reachable (was softgrad explore stopped?)" };
  }
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    return { ok: false, error: (data && data.error) || `HTTP ${response.status}` };
  }
  return { ok: true, data };
}

// One request in flight per endpoint; changes made meanwhile send the latest state once it returns.
function latestOnly(run) {
  let busy = false, again = false;
  const go = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try { await run(); } finally {
      busy = false;
      if (again) { again = false; go(); }
    }
  };
  return go;
}

// ---- formatting ------------------------------------------------------------------------

function isBad(v) { return typeof v === "string" || !Number.isFinite(v); }

function fmt(v, digits = 6) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v === "nan" ? "NaN" : v.replace("inf", "∞");
  if (v === 0) return (0).toFixed(digits);
  const a = Math.abs(v);
  if (a < Math.max(1e-4, 10 ** -digits) || a >= 1e7) return v.toExponential(Math.max(3, digits - 2));
  return v.toFixed(digits);
}

function short(v) { return Number.isFinite(v) ? String(Math.round(v * 1000) / 1000) : String(v); }

function cell(v, cls = "num") {
  const td = document.createElement("td");
  td.className = cls + (isBad(v) ? " bad" : "");
  td.textContent = fmt(v);
  td.dataset.value = String(v);
  return td;
}

function tableOf(headers, rows, rowClass) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.innerHTML = h;
    head.appendChild(th);
  }
  const body = table.createTBody();
  rows.forEach((cells, i) => {
    const tr = body.insertRow();
    if (rowClass) tr.className = rowClass(i);
    for (const c of cells) tr.appendChild(c);
  });
  return table;
}

function text(s, cls) {
  const td = document.createElement("td");
  td.textContent = s;
  if (cls) td.className = cls;
  return td;
}

// KaTeX loads async, off the path to the first numbers; formulas asked for before it arrives
// are drawn when it does.
const pendingTex = [];
function tex(latex, el, display) {
  if (window.katex) {
    window.katex.render(latex, el, { displayMode: !!display, throwOnError: false });
  } else {
    pendingTex.push([latex, el, display]);
  }
}

function whenKatexLoads() {
  const script = $("katex-script");
  const flush = () => { for (const args of pendingTex.splice(0)) tex(...args); };
  if (window.katex) flush();
  else if (script) script.addEventListener("load", flush);
}

// ---- SVG -------------------------------------------------------------------------------

function svg(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function svgText(parent, x, y, s, anchor = "middle") {
  const t = svg("text", { x, y, "text-anchor": anchor }, parent);
  t.textContent = s;
  return t;
}

// Bars for values in [0, 1] (probabilities) or around 0 (gradients).
function barChart(host, values, { target, signed, label }) {
  host.replaceChildren();
  const n = values.length;
  if (n > CHART_MAX_BARS) {
    host.innerHTML = `<p class="muted">n = ${n}: too many classes for a bar chart; the table has every value.</p>`;
    return;
  }
  const W = 520, H = 190, left = 42, right = 8, top = 16, bottom = signed ? 34 : 22;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label }, host);
  const finite = values.map((v) => (isBad(v) ? 0 : v));
  const span = signed ? Math.max(1e-300, ...finite.map(Math.abs)) : 1;
  const plotH = H - top - bottom;
  const y0 = signed ? top + plotH / 2 : top + plotH;
  const scale = signed ? plotH / 2 / span : plotH;
  const ticks = signed ? [-span, 0, span] : [0, 0.5, 1];
  for (const t of ticks) {
    const y = y0 - t * scale;
    svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: t === 0 ? "axis" : "grid" }, root);
    svgText(root, left - 4, y + 4, signed ? fmtTick(t) : String(t), "end");
  }
  const slot = (W - left - right) / n;
  const bw = Math.max(1, slot * 0.72);
  finite.forEach((v, i) => {
    const x = left + i * slot + (slot - bw) / 2;
    const h = Math.abs(v) * scale;
    const y = v >= 0 ? y0 - h : y0;
    const fill = signed ? (v >= 0 ? "var(--pos)" : "var(--neg)") : (i === target ? "var(--target)" : "var(--accent)");
    const bar = svg("rect", { x, y, width: bw, height: Math.max(h, 0.5), fill, rx: Math.min(2, bw / 4) }, root);
    svg("title", {}, bar).textContent = `${i}: ${fmt(values[i])}`;
    if (n <= 24) svgText(root, x + bw / 2, H - 6, String(i));
    if (n <= 10) svgText(root, x + bw / 2, v >= 0 ? y - 3 : y + h + 11, fmt(values[i], 3));
  });
}

function fmtTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 0.01 && a < 1000 ? v.toPrecision(2) : v.toExponential(0);
}

// Diverging colour: negative blue, zero white, positive red.
function heatColor(v, span) {
  if (isBad(v)) return "#000";
  const t = Math.max(-1, Math.min(1, v / span));
  const [r, g, b] = t >= 0 ? [178, 24, 43] : [33, 102, 172];
  const a = Math.abs(t);
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

function heatMap(host, matrix, { size = 420, maxCell = 90, onHover, showValues, rowLabel = "i", colLabel = "j" }) {
  host.replaceChildren();
  const rows = matrix.length, cols = matrix[0].length;
  const pad = 18;
  const cellSize = Math.min(maxCell, (size - pad) / Math.max(rows, cols));
  const W = pad + cols * cellSize, H = pad + rows * cellSize;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", style: `max-width:${W}px` }, host);
  const span = Math.max(1e-300, ...matrix.flat().filter((v) => !isBad(v)).map(Math.abs));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      svg("rect", { x: pad + j * cellSize, y: pad + i * cellSize, width: cellSize + 0.3, height: cellSize + 0.3,
        fill: heatColor(matrix[i][j], span), class: "cell" }, root);
      if (showValues) {
        const t = svgText(root, pad + (j + 0.5) * cellSize, pad + (i + 0.5) * cellSize + 4, fmt(matrix[i][j], 3));
        if (Math.abs(matrix[i][j]) > 0.6 * span) t.setAttribute("style", "fill:#fff");
      }
    }
  }
  if (rows <= 24) for (let i = 0; i < rows; i++) svgText(root, pad / 2, pad + (i + 0.5) * cellSize + 4, String(i));
  if (cols <= 24) for (let j = 0; j < cols; j++) svgText(root, pad + (j + 0.5) * cellSize, pad - 5, String(j));
  svgText(root, 5, 11, `${rowLabel}\\${colLabel}`, "start").setAttribute("style", "font-size:9px;fill:#6b7280");
  if (!onHover) return;
  const hl = svg("rect", { class: "hl", width: cellSize, height: cellSize, visibility: "hidden" }, root);
  root.addEventListener("mousemove", (ev) => {
    const box = root.getBoundingClientRect();
    const j = Math.floor(((ev.clientX - box.left) * (W / box.width) - pad) / cellSize);
    const i = Math.floor(((ev.clientY - box.top) * (H / box.height) - pad) / cellSize);
    if (i < 0 || j < 0 || i >= rows || j >= cols) { hl.setAttribute("visibility", "hidden"); return; }
    hl.setAttribute("x", pad + j * cellSize);
    hl.setAttribute("y", pad + i * cellSize);
    hl.setAttribute("visibility", "visible");
    onHover(i, j, matrix[i][j]);
  });
  root.addEventListener("mouseleave", () => hl.setAttribute("visibility", "hidden"));
}

// ---- inputs ----------------------------------------------------------------------------

// Numbers stay numbers; anything else is sent as typed, so the server's message names it.
function parseList(s) {
  return s.split(/[\s,;]+/).filter((t) => t !== "").map((t) => (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t) ? Number(t) : t));
}

function readInputs() {
  state.logits = parseList($("logits").value);
  const t = Number($("temperature").value);
  state.temperature = $("temperature").value.trim() === "" ? $("temperature").value : t;
}

function buildSliders() {
  const host = $("sliders");
  host.replaceChildren();
  const xs = state.logits;
  if (xs.length > MAX_SLIDERS || !xs.every((v) => typeof v === "number")) { sliderRange = null; return; }
  const m = Math.max(10, ...xs.map((v) => Math.abs(v) * 1.5));
  sliderRange = [-m, m];
  xs.forEach((v, i) => {
    const name = document.createElement("span");
    name.textContent = `x${sub(i)}`;
    name.className = i === state.target ? "tgt" : "";
    const range = document.createElement("input");
    Object.assign(range, { type: "range", min: -m, max: m, step: m / 500, value: v });
    range.dataset.testid = `slider-${i}`;
    range.setAttribute("aria-label", `logit ${i}`);
    const val = document.createElement("span");
    val.className = "val";
    val.textContent = short(v);
    range.addEventListener("input", () => {
      state.logits[i] = Number(range.value);
      val.textContent = short(state.logits[i]);
      $("logits").value = state.logits.map(short).join(", ");
      requestCompute();
    });
    host.append(name, range, val);
  });
}

function sub(i) { return String(i).replace(/\d/g, (d) => "₀₁₂₃₄₅₆₇₈₉"[d]); }

function fillTargets(select, n, current) {
  if (select.options.length !== n) {
    select.replaceChildren(...Array.from({ length: n }, (_, i) => new Option(`class ${i}`, String(i))));
  }
  select.value = String(Math.min(current, n - 1));
  return Number(select.value);
}

// ---- the main view ---------------------------------------------------------------------

const requestCompute = latestOnly(async () => {
  readInputs();
  const n = state.logits.length;
  if (n > 0) state.target = fillTargets($("target"), Math.min(n, 4096), state.target);
  const started = performance.now();
  const res = await api("/api/compute", { logits: state.logits, temperature: state.temperature, target: state.target });
  if (!res.ok) { showError(res.error); return; }
  showError(null);
  render(res.data);
  $("status").textContent = `n = ${res.data.n} · computed and drawn in ${Math.round(performance.now() - started)} ms`;
  if (!window.softgradFirstProbabilitiesMs) {
    window.softgradFirstProbabilitiesMs = performance.now();
    performance.mark("softgrad:first-probabilities");
  }
  if (!state.topic.includes("layer")) requestDerivation();
});

function showError(message) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
  for (const id of ["card-softmax", "card-loss", "card-jacobian", "card-stability"]) {
    $(id).classList.toggle("stale", !!message);
  }
}

function render(d) {
  barChart($("prob-chart"), d.softmax, { target: d.target, label: "probabilities" });
  const rows = d.softmax.map((s, i) => [text(String(i)), cell(d.logits[i]), cell(s, "num prob"), cell(d.log_softmax[i], "num logp")]);
  $("probabilities").replaceChildren(tableOf(["i", "x<sub>i</sub>", "S<sub>i</sub>", "log S<sub>i</sub>"], rows,
    (i) => (i === d.target ? "target" : "")));

  const loss = $("loss");
  loss.textContent = fmt(d.loss, 8);
  loss.dataset.value = String(d.loss);
  barChart($("grad-chart"), d.grad, { signed: true, label: "gradient" });
  const g = d.grad.map((v, i) => [text(String(i)), cell(d.s_minus_y[i]), cell(v, "num grad")]);
  $("gradient").replaceChildren(tableOf(["i", "S<sub>i</sub> − y<sub>i</sub>", "∂L/∂x<sub>i</sub>"], g,
    (i) => (i === d.target ? "target" : "")));

  renderJacobian(d);
  renderStability(d);
}

function renderJacobian(d) {
  const host = $("jacobian");
  if (!d.jacobian) {
    host.innerHTML = `<p class="muted">n = ${d.n}: the n × n Jacobian (${(d.n * d.n).toLocaleString()} numbers) is not sent above n = ${state.limits.jacobian_auto_n}; the gradient never needs it (see “Why backward is slow”).</p>`;
    $("jacobian-readout").textContent = "";
    return;
  }
  const readout = $("jacobian-readout");
  readout.textContent = "Hover over a cell to read its value.";
  heatMap(host, d.jacobian, {
    showValues: d.n <= 6,
    onHover: (i, j, v) => {
      readout.textContent = `J[${i}, ${j}] = ∂S${sub(i)}/∂x${sub(j)} = ${fmt(v, 8)}`;
      readout.dataset.value = String(v);
    },
  });
}

function vector(values, limit = 4) {
  const shown = values.slice(0, limit).map((v) => fmt(v, 4));
  return `[${shown.join(", ")}${values.length > limit ? ", …" : ""}]`;
}

function verdict(values, { logs } = {}) {
  const nan = values.some((v) => v === "nan");
  const inf = values.some((v) => v === "inf" || v === "-inf");
  if (nan) return ["bad", "NaN"];
  if (inf) return ["bad", logs ? "−∞ (log 0)" : "∞"];
  return ["ok", "finite"];
}

function renderStability(d) {
  const lab = d.stability;
  const zmax = Math.max(...d.logits.map((v) => v / d.temperature));
  $("stability-note").innerHTML =
    `exp(z) overflows above z = ${fmt(lab.float16.exp_overflow, 2)} in float16, ${fmt(lab.float32.exp_overflow, 2)} in float32 and ` +
    `${fmt(lab.float64.exp_overflow, 2)} in float64; here the largest z = x/T is <b>${fmt(zmax, 4)}</b>. ` +
    "The naive softmax computes exp(z)/Σexp(z) with no shift, and log(softmax) takes the log of that; softgrad " +
    "subtracts the maximum and builds log-softmax on log-sum-exp.";
  const table = tableOf(["dtype", "x rounded to the dtype", "", "naive: exp(z) / Σ exp(z) and its log", "softgrad: softmax, log_softmax"], []);
  table.className = "stab";
  const body = table.tBodies[0];
  for (const name of ["float16", "float32", "float64"]) {
    const r = lab[name];
    [["softmax", "softmax", "naive_softmax", "softmax", false],
      ["log_softmax", "log-softmax", "naive_log_softmax", "log_softmax", true]].forEach(([what, label, naive, ours, logs], k) => {
      const tr = body.insertRow();
      if (k === 0) {
        const dt = text(name, "dtype");
        const input = text(vector(r.input), "vec");
        if (r.input.some(isBad)) input.prepend(badge("warn", "overflows the dtype"));
        dt.rowSpan = input.rowSpan = 2;
        tr.append(dt, input);
      } else {
        tr.className = "second";
      }
      tr.append(text(label, "what"));
      for (const key of [naive, ours]) {
        const [cls, word] = verdict(r[key], { logs });
        const td = text(vector(r[key]), "vec");
        td.prepend(badge(cls, word));
        td.dataset.testid = `stab-${name}-${key}`;
        td.dataset.verdict = cls;
        tr.append(td);
      }
    });
  }
  $("stability").replaceChildren(table);
}

function badge(cls, word) {
  const b = document.createElement("span");
  b.className = `badge ${cls}`;
  b.textContent = cls === "ok" ? `✓ ${word}` : `✗ ${word}`;
  return b;
}

// ---- why backward is slow --------------------------------------------------------------

async function runTiming() {
  const n = Math.round(Number($("timing-n").value));
  const sizes = [...new Set([10, 100, 1000, n].filter((v) => v >= 1))].sort((a, b) => a - b);
  const button = $("timing-run");
  button.disabled = true;
  $("timing").innerHTML = `<p class="muted">timing n = ${sizes.join(", ")} in the server…</p>`;
  const res = await api("/api/timing", { sizes });
  button.disabled = false;
  if (!res.ok) { $("timing").innerHTML = ""; $("timing").append(errorLine(res.error)); return; }
  const rows = res.data.rows.map((r) => [text(r.n.toLocaleString()), text(ms(r.dense_s), "num"), text(ms(r.vjp_s), "num"),
    text(`${r.ratio.toFixed(r.ratio < 10 ? 1 : 0)}×`, "num"), text(bytes(r.jacobian_bytes), "num"), text(r.max_abs_diff.toExponential(1), "num")]);
  $("timing").replaceChildren(tableOf(["n", "dense gᵀJ", "VJP", "dense / VJP", "J in memory", "max |Δ|"], rows));
  timingChart($("timing-chart"), res.data.rows);
}

function ms(s) { return s >= 1e-3 ? `${(s * 1e3).toFixed(s >= 0.1 ? 0 : 2)} ms` : `${(s * 1e6).toFixed(1)} µs`; }
function tickSeconds(e) {
  const units = [[-6, "µs"], [-3, "ms"], [0, "s"]];
  const [base, unit] = units.filter(([b]) => e >= b).pop() || units[0];
  return `${10 ** (e - base)} ${unit}`;
}
function bytes(b) { return b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`; }

function errorLine(message) {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = message;
  return p;
}

function timingChart(host, rows) {
  host.replaceChildren();
  const W = 420, H = 200, left = 52, right = 70, top = 10, bottom = 30;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "time against n" }, host);
  const ns = rows.map((r) => r.n), ts = rows.flatMap((r) => [r.dense_s, r.vjp_s]);
  const lx = (v) => Math.log10(v), [x0, x1] = [lx(Math.min(...ns)), lx(Math.max(...ns)) + 1e-9];
  const [y0, y1] = [Math.floor(lx(Math.min(...ts))), Math.ceil(lx(Math.max(...ts)))];
  const px = (n) => left + ((lx(n) - x0) / (x1 - x0)) * (W - left - right);
  const py = (t) => H - bottom - ((lx(t) - y0) / Math.max(1, y1 - y0)) * (H - top - bottom);
  for (let e = y0; e <= y1; e++) {
    svg("line", { x1: left, x2: W - right, y1: py(10 ** e), y2: py(10 ** e), class: "grid" }, root);
    svgText(root, left - 4, py(10 ** e) + 4, tickSeconds(e), "end");
  }
  for (const n of ns) svgText(root, px(n), H - bottom + 14, n.toLocaleString());
  svgText(root, (left + W - right) / 2, H - 3, "n (log scale)");
  for (const [key, color, name] of [["dense_s", "var(--pos)", "dense"], ["vjp_s", "var(--accent)", "VJP"]]) {
    const pts = rows.map((r) => `${px(r.n)},${py(r[key])}`).join(" ");
    svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 }, root);
    rows.forEach((r) => svg("circle", { cx: px(r.n), cy: py(r[key]), r: 3, fill: color }, root));
    const last = rows[rows.length - 1];
    svgText(root, px(last.n) + 6, py(last[key]) + 4, name, "start").setAttribute("style", `fill:${color};font-weight:600`);
  }
}

// ---- the softmax layer -----------------------------------------------------------------

const requestLayer = latestOnly(async () => {
  const W = $("layer-W").value.split(/\n|;/).map((r) => r.trim()).filter((r) => r !== "").map(parseList);
  const bText = $("layer-b").value.trim();
  const T = W.length;
  const target = T > 0 ? fillTargets($("layer-target"), T, Number($("layer-target").value || 0)) : 0;
  state.layerX = parseList($("layer-x").value);
  const body = { x: state.layerX, W, b: bText === "" ? null : parseList(bText), target };
  const res = await api("/api/layer", body);
  const err = $("layer-error");
  err.hidden = res.ok;
  err.textContent = res.ok ? "" : res.error;
  $("layer").classList.toggle("stale", !res.ok);
  state.layer = res.ok ? { W: body.W, b: body.b, target } : null; // what the derivation panel evaluates at
  if (res.ok) renderLayer(res.data);
  if (state.topic.includes("layer")) requestDerivation();
});

function renderLayer(d) {
  const host = $("layer");
  host.replaceChildren();
  const left = document.createElement("div");
  const right = document.createElement("div");
  const rows = d.logits.map((z, i) => [text(String(i)), cell(z), cell(d.softmax[i], "num prob"), cell(d.grad_logits[i], "num")]);
  left.append(heading(`z = Wx + b, S and ∂L/∂z = S − y · L = ${fmt(d.loss, 6)}`),
    tableOf(["class", "z<sub>i</sub>", "S<sub>i</sub>", "∂L/∂z<sub>i</sub> = ∂L/∂b<sub>i</sub>"], rows, (i) => (i === d.target ? "target" : "")));
  const dx = d.grad_x.map((v, j) => [text(String(j)), cell(d.x[j]), cell(v, "num")]);
  left.append(heading("∂L/∂x = Wᵀ(S − y)"), tableOf(["j", "x<sub>j</sub>", "∂L/∂x<sub>j</sub>"], dx));
  const heat = document.createElement("div");
  heat.className = "chart heat";
  heat.dataset.testid = "layer-grad-W";
  right.append(heading("∂L/∂W = (S − y) xᵀ   (row i: class, column j: input)"), heat);
  host.append(left, right);
  heatMap(heat, d.grad_W, { size: 300, maxCell: 52, showValues: d.grad_W.length <= 8 && d.x.length <= 8 });
  const loss = document.createElement("span");
  loss.dataset.testid = "layer-loss";
  loss.dataset.value = String(d.loss);
  host.append(loss);
}

function heading(s) {
  const h = document.createElement("h3");
  h.textContent = s;
  return h;
}

// ---- the derivation panel --------------------------------------------------------------

let derivationTimer = null;
function requestDerivation() {
  clearTimeout(derivationTimer);
  derivationTimer = setTimeout(loadDerivation, 250); // slider drags: derive once they pause
}

const loadDerivation = latestOnly(async () => {
  const host = $("derivation");
  await state.info; // the topics
  if (!state.topics.length) {
    host.innerHTML = '<p class="muted">Derivations need <code>softgrad.teaching</code>, which this installation lacks.</p>';
    return;
  }
  // The derivations are written at T = 1: the server evaluates them at z = x / T (layer topics: at the layer's x).
  const layer = state.topic.includes("layer");
  const point = layer ? state.layerX : state.logits;
  const numeric = Array.isArray(point) && point.length > 0 && point.every((v) => typeof v === "number");
  const temperature = !layer && typeof state.temperature === "number" && state.temperature > 0 ? state.temperature : 1;
  const body = { topic: state.topic, logits: numeric ? point : null, temperature };
  if (numeric && layer && state.layer) Object.assign(body, state.layer); // the layer card's W, b and target
  if (numeric && state.topic === "cross_entropy") body.target = state.target;
  if (state.topic === "softmax_layer") delete body.target;
  const res = await api("/api/derive", body);
  if (!res.ok) { host.replaceChildren(errorLine(res.error)); return; }
  renderDerivation(host, res.data, temperature);
});

function renderDerivation(host, d, temperature) {
  host.replaceChildren();
  const title = document.createElement("h3");
  title.textContent = d.title || d.topic;
  host.append(title);
  if (d.summary) host.append(para(d.summary, "expl"));
  if (d.definition) host.append(display(d.definition));
  const list = document.createElement("ol");
  for (const step of d.steps || []) {
    const li = document.createElement("li");
    li.dataset.key = step.key;
    const rule = document.createElement("span");
    rule.className = "rule";
    rule.textContent = step.rule;
    li.append(rule);
    if (step.explanation) li.append(para(step.explanation, "expl"));
    if (step.latex) li.append(display(step.latex));
    list.append(li);
  }
  host.append(list);
  if (d.result) {
    const box = display(d.result);
    box.classList.add("result");
    host.append(box);
  }
  if (d.at && typeof d.at === "object") host.append(atPoint(d.at, temperature));
}

const AT_SYMBOLS = {
  x: "x", y: "y", S: "S", W: "W", b: "b", T: "T", "z = Wx": "z = Wx", "z = Wx + b": "z = Wx + b", loss: "L", log_softmax: "\\log S", jacobian: "J",
  gradient: "\\tfrac{\\partial L}{\\partial x}", "dL/dW": "\\tfrac{\\partial L}{\\partial W}",
  "dS/dT": "\\tfrac{\\partial S}{\\partial T}", "dP/dvec(W)": "\\tfrac{\\partial S}{\\partial\\,\\mathrm{vec}(W)}",
};

function atPoint(at, temperature) {
  const wrap = document.createElement("div");
  wrap.className = "at";
  wrap.dataset.testid = "derivation-at";
  let where = at.where || "At this point:";
  if (temperature !== 1) where += ` (z = x / T with T = ${temperature}: the derivation's x is the page's z)`;
  if (state.topic.includes("layer")) {
    where += state.layer ? " (x, W, b and the target are the Softmax layer card's)" : " (x is the Softmax layer card's; W is the derivation's own example)";
  }
  wrap.append(para(where, "expl"));
  for (const [key, value] of Object.entries(at)) {
    if (key === "where") continue;
    const symbol = AT_SYMBOLS[key] || `\\text{${key.replace(/[\\{}#$%&~^]/g, "").replace(/_/g, "\\_")}}`;
    wrap.append(display(`${symbol} = ${latexValue(value)}`));
  }
  return wrap;
}

function latexValue(v, limit = 6) {
  const num = (x) => (typeof x === "number" ? fmt(x, 4) : String(x));
  if (!Array.isArray(v)) return num(v);
  const cut = (a) => (a.length > limit ? [...a.slice(0, limit - 1), "\\cdots"] : a);
  if (!v.some(Array.isArray)) return `\\begin{bmatrix} ${cut(v.map(num)).join(" & ")} \\end{bmatrix}`;
  const rows = cut(v.map((row) => cut(row.map(num)).join(" & ")));
  return `\\begin{bmatrix} ${rows.join(" \\\\ ")} \\end{bmatrix}`;
}

function para(s, cls) {
  const p = document.createElement("div");
  p.className = cls;
  p.textContent = s;
  return p;
}

function display(latex) {
  const div = document.createElement("div");
  tex(latex, div, true);
  return div;
}

// ---- wiring ----------------------------------------------------------------------------

function setTemperature(t, fromSlider) {
  if (fromSlider) $("temperature").value = String(Math.round(t * 1000) / 1000);
  else if (t > 0) $("temperature-slider").value = String(Math.log10(t));
  requestCompute();
}

function randomLogits(n) {
  // Display only: a starting point the user could have typed; the server computes from it.
  return Array.from({ length: n }, () => Math.round((Math.random() * 8 - 4) * 100) / 100).join(", ");
}

async function init() {
  // The first numbers go out before anything else: /api/info and the formulas do not hold them up.
  state.info = api("/api/info");
  readInputs();
  buildSliders();
  requestCompute();
  requestLayer();
  document.querySelectorAll(".formula").forEach((el) => tex(el.dataset.tex, el, false));
  whenKatexLoads();

  $("logits").addEventListener("input", () => { readInputs(); buildSliders(); requestCompute(); });
  document.querySelectorAll("[data-preset]").forEach((b) => b.addEventListener("click", () => {
    $("logits").value = b.dataset.preset === "random" ? randomLogits(8) : b.dataset.preset;
    readInputs();
    buildSliders();
    requestCompute();
  }));
  $("temperature-slider").addEventListener("input", () => setTemperature(10 ** Number($("temperature-slider").value), true));
  $("temperature").addEventListener("input", () => setTemperature(Number($("temperature").value), false));
  $("target").addEventListener("change", () => {
    state.target = Number($("target").value);
    buildSliders();
    requestCompute();
  });
  $("timing-run").addEventListener("click", runTiming);
  for (const id of ["layer-x", "layer-W", "layer-b"]) $(id).addEventListener("input", requestLayer);
  $("layer-target").addEventListener("change", requestLayer);

  const info = await state.info;
  if (info.ok) {
    state.topics = info.data.topics;
    state.limits = info.data.limits;
    $("version").textContent = ` ${info.data.version}`;
    $("timing-n").max = info.data.limits.timing_n;
  }
  const topic = $("topic");
  topic.replaceChildren(...state.topics.map((t) => new Option(t.replaceAll("_", " "), t)));
  topic.hidden = !state.topics.length;
  topic.addEventListener("change", () => { state.topic = topic.value; requestDerivation(); });
  loadDerivation();
}

document.addEventListener("DOMContentLoaded", init);
