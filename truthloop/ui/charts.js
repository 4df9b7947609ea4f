// Charts on uPlot (vendor/uPlot.iife.min.js): a metric with its bands, counts as bars, a state
// timeline, and small SVG sparklines and histograms. Each uPlot chart's element holds its
// instance as `el.__chart` (and `el.__marks`, `el.__periods`) for tests.

import { h, s } from './dom.js';
import * as fmt from './fmt.js';

const U = window.uPlot;

export const COLORS = {
  realized: '#1f5fd1',
  estimated: '#c2570c',
  reviewed: '#7c3aed',
  samples: '#cdd5e0',
  labeled: '#1f5fd1',
  threshold: '#d42a2a',
  fallback: 'rgba(234, 120, 12, 0.13)',
  version: '#334155',
  grid: '#edf0f4',
  axis: '#566173',
};

export const PHASE_COLORS = {
  Healthy: '#2f9e5b',
  Collecting: '#94a3b8',
  Pending: '#cbd5e1',
  Degraded: '#e0a100',
  FallbackActive: '#e0701a',
  Invalid: '#b91c1c',
};

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const Y_AXIS_SIZE = 56;
const SYNC = 'truthloop';
// Room on the right for the last time tick's label.
const PADDING = [8, 30, 0, 0];

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Time ticks on one line, 24-hour clock: the date where a day begins (and on the first tick). */
function timeTicks(u, splits, axis, space, incr) {
  let day = null;
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const date = `${d.toLocaleString('en', { month: 'short' })} ${d.getDate()}`;
    const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const newDay = date !== day;
    day = date;
    if (incr >= 86400) return date;
    return newDay ? `${date} ${clock}` : clock;
  });
}

function xAxis() {
  return {
    stroke: COLORS.axis, font: FONT, size: 24, space: 64, values: timeTicks,
    grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1, size: 4 },
  };
}

function yAxis(values, size = Y_AXIS_SIZE) {
  return {
    stroke: COLORS.axis, font: FONT, size, gap: 4,
    grid: { stroke: COLORS.grid, width: 1 }, ticks: { show: false },
    values: values || ((u, splits) => splits.map((v) => fmt.num(v, 2))),
  };
}

/** Shaded periods (fallback), vertical version marks and horizontal thresholds, drawn on the
 * chart's canvas: periods under the series, lines over them. */
function overlays({ periods = [], marks = [], thresholds = [] }) {
  const x = (u, v) => u.valToPos(v, 'x', true);
  return {
    hooks: {
      drawClear: [(u) => {
        const { ctx, bbox } = u;
        const [min, max] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        ctx.fillStyle = COLORS.fallback;
        for (const [start, end] of periods) {
          const a = Math.max(start, min);
          const b = Math.min(end ?? max, max);
          if (b <= a) continue;
          ctx.fillRect(x(u, a), bbox.top, x(u, b) - x(u, a), bbox.height);
        }
        ctx.restore();
      }],
      draw: [(u) => {
        const { ctx, bbox } = u;
        const ratio = window.devicePixelRatio || 1;
        ctx.save();
        ctx.font = `${10 * ratio}px system-ui, sans-serif`;
        ctx.lineWidth = ratio;
        const labels = [];
        for (const t of thresholds) {
          const y = u.valToPos(t.value, 'y', true);
          if (y < bbox.top || y > bbox.top + bbox.height) continue;
          // a label clear of those above it
          let at = y - 3 * ratio;
          while (labels.some((l) => Math.abs(l - at) < 12 * ratio)) at -= 12 * ratio;
          labels.push(at);
          ctx.strokeStyle = COLORS.threshold;
          ctx.setLineDash([5 * ratio, 4 * ratio]);
          ctx.beginPath();
          ctx.moveTo(bbox.left, y);
          ctx.lineTo(bbox.left + bbox.width, y);
          ctx.stroke();
          const w = ctx.measureText(t.label).width + 6 * ratio;
          const right = bbox.left + bbox.width - 4 * ratio;
          ctx.fillStyle = 'rgba(255,255,255,0.85)';
          ctx.fillRect(right - w + 3 * ratio, at - 11 * ratio, w, 12 * ratio);
          ctx.fillStyle = COLORS.threshold;
          ctx.textAlign = 'right';
          ctx.textBaseline = 'bottom';
          ctx.fillText(t.label, right, at);
        }
        ctx.setLineDash([2 * ratio, 3 * ratio]);
        ctx.textAlign = 'left';
        ctx.textBaseline = 'top';
        for (const m of marks) {
          if (m.at < u.scales.x.min || m.at > u.scales.x.max) continue;
          const w = ctx.measureText(m.label).width + 6 * ratio;
          const px = Math.round(x(u, m.at)) + 0.5;
          ctx.strokeStyle = COLORS.version;
          ctx.beginPath();
          ctx.moveTo(px, bbox.top);
          ctx.lineTo(px, bbox.top + bbox.height);
          ctx.stroke();
          ctx.fillStyle = 'rgba(255,255,255,0.9)';
          ctx.fillRect(px + 2 * ratio, bbox.top + 1 * ratio, w, 13 * ratio);
          ctx.fillStyle = COLORS.version;
          ctx.fillText(m.label, px + 5 * ratio, bbox.top + 3 * ratio);
        }
        ctx.restore();
      }],
    },
  };
}

function sizeOf(el, height) {
  return { width: Math.max(240, el.clientWidth || 600), height };
}

/** A left axis wide enough for `labels` (lane names), the same for every chart of a page so
 * their time axes line up. */
export function axisFor(labels) {
  return Math.min(150, Math.max(Y_AXIS_SIZE, 14 + 6.3 * Math.max(0, ...labels.map((l) => l.length))));
}

/** Keep a chart as wide as its element. */
function track(el, u, height) {
  let pending = 0;
  const resize = () => {
    if (!el.isConnected) {
      window.removeEventListener('resize', resize);
      return;
    }
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => u.setSize(sizeOf(el.querySelector('.plot'), height)));
  };
  window.addEventListener('resize', resize);
}

function attach(el, u, extra) {
  Object.assign(el, { __chart: u, __marks: [], __periods: [], __thresholds: [] }, extra);
  el.dataset.points = String(u.data[0].length);
}

/** Index of the cursor, else of the last point with a value in `column`. */
function focusIndex(u, column) {
  if (u.cursor.idx != null) return u.cursor.idx;
  for (let i = u.data[0].length - 1; i >= 0; i--) {
    if (u.data[column][i] != null) return i;
  }
  return null;
}

/** The legend follows the cursor; without one, each series shows its latest value. */
function follow(u, when, chips, show) {
  const hovered = u.cursor.idx;
  when.textContent = hovered == null ? 'latest' : fmt.time(u.data[0][hovered]);
  for (const c of chips) {
    const i = focusIndex(u, c.at);
    c.value.textContent = i == null ? fmt.DASH : show(i, c.at);
  }
}

/**
 * A chart over time: a head (its title, the time the legend shows, a chip per legend entry) over
 * the plot, with the overlays. `entries`: [name, color, column]; `show(u, i, column)` a column's
 * value at `i` as text; the rest is what differs between charts (uPlot's data, series, bands, the
 * y scale's range and tick values, the cursor's points).
 */
function timeChart(el, {
  title, entries, show, data, series, bands, yRange, yValues, cursorPoints = { size: 6 },
  height, axis, marks = [], periods = [], thresholds = [],
}) {
  el.classList.add('chart');
  const legend = h('div.legend');
  const when = h('span.when');
  const plot = h('div.plot');
  el.replaceChildren(h('div.chart-head', h('h3', title), when, legend), plot);
  const chips = entries.map(([name, color, at]) => {
    const value = h('span.value');
    legend.append(h('span.chip', h('i', { style: `background:${color}` }), name, ' ', value));
    return { at, value };
  });
  if (!entries.length) legend.append(h('span.muted', 'no values in this window'));
  const u = new U({
    ...sizeOf(plot, height),
    padding: PADDING,
    legend: { show: false },
    cursor: { sync: { key: SYNC }, points: cursorPoints, drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: yRange } },
    axes: [xAxis(), yAxis(yValues, axis)],
    series,
    bands,
    plugins: [overlays({ periods, marks, thresholds })],
    hooks: { setCursor: [(u) => follow(u, when, chips, (i, at) => show(u, i, at))] },
  }, data, plot);
  u.hooks.setCursor[0](u);
  track(el, u, height);
  attach(el, u, { __marks: marks, __periods: periods, __thresholds: thresholds });
  return u;
}

/**
 * A metric over time: each source (realized, estimated, reviewed) a line with its 95% band.
 * sources: [{name, values, lower, upper}] (arrays aligned with x).
 */
export function metricChart(el, { x, sources, thresholds, range, height = 170, ...rest }) {
  const data = [x];
  const series = [{}];
  const bands = [];
  const entries = [];
  for (const src of sources.filter((s) => s.values.some((v) => v != null))) {
    const color = COLORS[src.name];
    const at = data.length;
    data.push(src.values, src.lower, src.upper);
    series.push(
      { label: src.name, stroke: color, width: 1.75, spanGaps: false, points: { size: 4, fill: color } },
      { label: `${src.name} lower`, stroke: alpha(color, 0.25), width: 0.5, points: { show: false } },
      { label: `${src.name} upper`, stroke: alpha(color, 0.25), width: 0.5, points: { show: false } },
    );
    bands.push({ series: [at + 2, at + 1], fill: alpha(color, 0.13) });
    entries.push([src.name, color, at]);
  }
  const lines = (thresholds || []).map((t) => t.value);
  return timeChart(el, {
    ...rest, height, thresholds, entries, data, series, bands,
    show: (u, i, at) => fmt.interval({ value: u.data[at][i], lower: u.data[at + 1][i], upper: u.data[at + 2][i] }),
    yRange: (u, min, max) => {
      let lo = Math.min(min ?? 0, ...lines);
      let hi = Math.max(max ?? 1, ...lines);
      const pad = (hi - lo) * 0.08 || 0.05;
      lo -= pad;
      hi += pad;
      return range ? [Math.max(range[0], lo), Math.min(range[1], hi)] : [lo, hi];
    },
  });
}

/** Counts per step as bars, drawn over each other in order (labeled over predictions). */
export function countChart(el, { x, bars, height = 120, ...rest }) {
  const paths = U.paths.bars({ size: [0.8, 24], gap: 1 });
  return timeChart(el, {
    ...rest, height,
    entries: bars.map((b, i) => [b.name, b.color, i + 1]),
    data: [x, ...bars.map((b) => b.values)],
    series: [{}, ...bars.map((b) => ({ label: b.name, fill: b.color, stroke: b.color, width: 0, paths, points: { show: false } }))],
    show: (u, i, at) => fmt.count(u.data[at][i]),
    yRange: (u, min, max) => [0, Math.max(1, max) * 1.08],
    yValues: (u, splits) => splits.map((v) => fmt.count(v)),
    cursorPoints: { show: false },
  });
}

/** Lines without bands (drift distances, sidecar figures): lines: [{name, color, values}]. */
export function lineChart(el, { x, lines, thresholds, format, range, height = 150, ...rest }) {
  const show = format || ((v) => fmt.num(v));
  const limits = (thresholds || []).map((t) => t.value);
  return timeChart(el, {
    ...rest, height, thresholds,
    entries: lines.map((l, i) => [l.name, l.color, i + 1]),
    data: [x, ...lines.map((l) => l.values)],
    series: [{}, ...lines.map((l) => ({ label: l.name, stroke: l.color, width: 1.5, spanGaps: false, points: { size: 3, fill: l.color } }))],
    show: (u, i, at) => show(u.data[at][i]),
    yRange: (u, min, max) => {
      const lo = range ? range[0] : Math.min(min ?? 0, ...limits);
      const hi = Math.max(max ?? 1e-9, ...limits, lo + 1e-9) * 1.1;
      return [lo, range && range[1] != null ? Math.min(range[1], hi) : hi];
    },
    yValues: (u, splits) => splits.map((v) => show(v)),
  });
}

/**
 * Lanes of states over time (phase, each alert, the fallback): lanes: [{name, spans: [[start,
 * end|null, label, color]]}] between `start` and `end`.
 */
export function timelineChart(el, { lanes, start, end, marks, height, axis }) {
  el.classList.add('chart', 'timeline');
  const rows = Math.max(1, lanes.length);
  height = height || 30 + rows * 22;
  el.replaceChildren(h('div.plot'));
  const lane = 1;
  const drawLanes = (u) => {
    const { ctx, bbox } = u;
    const ratio = window.devicePixelRatio || 1;
    const rowH = bbox.height / rows;
    ctx.save();
    ctx.font = `${10 * ratio}px system-ui, sans-serif`;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    lanes.forEach((ln, i) => {
      const top = bbox.top + i * rowH + 3 * ratio;
      const hgt = rowH - 6 * ratio;
      ctx.fillStyle = '#f4f6f9';
      ctx.fillRect(bbox.left, top, bbox.width, hgt);
      for (const [a, b, text, color] of ln.spans) {
        const x0 = u.valToPos(Math.max(a, start), 'x', true);
        const x1 = u.valToPos(Math.min(b ?? end, end), 'x', true);
        if (x1 <= x0) continue;
        ctx.fillStyle = color;
        ctx.fillRect(x0, top, Math.max(x1 - x0, ratio), hgt);
        const width = ctx.measureText(text).width;
        if (text && x1 - x0 > width + 8 * ratio) {
          ctx.fillStyle = '#fff';
          ctx.fillText(text, x0 + 4 * ratio, top + hgt / 2);
        }
      }
    });
    ctx.restore();
  };
  const u = new U({
    ...sizeOf(el.querySelector('.plot'), height),
    padding: PADDING,
    legend: { show: false },
    cursor: { sync: { key: SYNC }, points: { show: false }, y: false, drag: { x: false, y: false } },
    scales: { x: { time: true, range: [start, end] }, y: { range: [0, rows] } },
    axes: [
      xAxis(),
      {
        ...yAxis(null, axis), grid: { show: false },
        splits: () => lanes.map((_, i) => rows - i - 0.5),
        values: () => lanes.map((ln) => ln.name),
      },
    ],
    series: [{}, { label: 'lanes', show: false }],
    plugins: [overlays({ marks })],
    hooks: { draw: [drawLanes] },
  }, [[start, end], [lane, lane]], el.querySelector('.plot'));
  track(el, u, height);
  attach(el, u, { __marks: marks || [], __lanes: lanes });
  return u;
}

/** A small SVG line (the overview's headline metric), with its band. */
export function sparkline(points, { width = 140, height = 30, color = COLORS.realized, range } = {}) {
  const have = points.filter((p) => p.value != null);
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'spark', 'aria-hidden': 'true' });
  if (have.length < 2) return svg;
  const xs = points.map((p) => p.at);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const vals = have.flatMap((p) => [p.value, p.lower ?? p.value, p.upper ?? p.value]);
  let [lo, hi] = range || [Math.min(...vals), Math.max(...vals)];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const px = (t) => ((t - x0) / (x1 - x0 || 1)) * (width - 2) + 1;
  const py = (v) => height - 2 - ((v - lo) / (hi - lo)) * (height - 4);
  const runs = [];
  let run = [];
  for (const p of points) {
    if (p.value == null) { if (run.length) runs.push(run); run = []; } else run.push(p);
  }
  if (run.length) runs.push(run);
  for (const r of runs) {
    if (r[0].lower != null) {
      const up = r.map((p) => `${px(p.at)},${py(p.upper)}`);
      const down = r.slice().reverse().map((p) => `${px(p.at)},${py(p.lower)}`);
      svg.append(s('polygon', { points: [...up, ...down].join(' '), fill: alpha(color, 0.15) }));
    }
    svg.append(s('polyline', { points: r.map((p) => `${px(p.at)},${py(p.value)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5 }));
  }
  return svg;
}

/** Reference vs current proportions of a feature's bins, as grouped SVG bars. */
export function histogram({ labels, reference, current, width = 340, height = 160 }) {
  const n = labels.length;
  const max = Math.max(1e-9, ...reference, ...current);
  const pad = { l: 34, r: 6, t: 6, b: 30 };
  const w = width - pad.l - pad.r;
  const hgt = height - pad.t - pad.b;
  const slot = w / Math.max(1, n);
  const bar = Math.max(1, slot * 0.38);
  const svg = s('svg', { width: '100%', viewBox: `0 0 ${width} ${height}`, class: 'histogram', role: 'img' });
  for (const f of [0, 0.5, 1]) {
    const y = pad.t + hgt - f * hgt;
    svg.append(
      s('line', { x1: pad.l, x2: width - pad.r, y1: y, y2: y, stroke: COLORS.grid }),
      s('text', { x: pad.l - 4, y: y + 3, 'text-anchor': 'end', class: 'tick' }, fmt.pct(f * max, 0)),
    );
  }
  const step = Math.ceil(n / Math.max(1, Math.floor(w / 46)));
  labels.forEach((text, i) => {
    const x = pad.l + i * slot + slot / 2;
    const r = reference[i] || 0;
    const c = current[i] || 0;
    svg.append(
      s('rect', { x: x - bar, y: pad.t + hgt - (r / max) * hgt, width: bar, height: (r / max) * hgt, fill: '#9aa8bb' },
        s('title', {}, `${text}: reference ${fmt.pct(r)}`)),
      s('rect', { x, y: pad.t + hgt - (c / max) * hgt, width: bar, height: (c / max) * hgt, fill: COLORS.realized },
        s('title', {}, `${text}: current ${fmt.pct(c)}`)),
    );
    if (i % step === 0) {
      svg.append(s('text', { x, y: height - pad.b + 13, 'text-anchor': 'middle', class: 'tick' }, text.length > 10 ? text.slice(0, 9) + '…' : text));
    }
  });
  return svg;
}
