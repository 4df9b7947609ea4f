// One monitor over time: the phase/alert/fallback timeline, each metric with its bands
// (realized, estimated, reviewed), labeled per step, alert thresholds, fallback periods shaded,
// model versions marked.

import * as api from '../api.js';
import * as charts from '../charts.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { empty, header, phaseLabel, pointsFor, stat, windowOf } from './frame.js';

export const refreshes = true;
const SOURCES = ['realized', 'estimated', 'reviewed'];
const GROUP = { realized: 'metrics', estimated: 'estimated', reviewed: 'reviewed' };

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const points = pointsFor(ctx.el.clientWidth || 1000);
  const series = (window) => Promise.all([
    api.get(`${path}/metrics`, { window, points }),
    api.get(`${path}/history`, { window }),
    api.get(`${path}/sidecar`, { window, points }),
  ]);
  // A window in the address needs nothing of the monitor: ask for everything at once.
  const asked = ctx.params.get('w');
  const early = asked && fmt.parseDuration(asked) ? series(asked) : null;
  early?.catch(() => {}); // awaited below, unless the monitor's own request fails first
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const window = windowOf(ctx, monitor);
  const [answer, history, sidecar] = await (early || series(window));
  if (!ctx.current()) return;
  const { start, end } = answer.window;
  const { step } = answer;
  const status = monitor.status || {};
  const periods = history.periods;
  const marks = (status.versions || []).map((v) => ({ at: v.first_seen, label: v.version || '(none)' }));
  const steps = answer.series || [];
  const x = steps.map((p) => p.start);
  const { metric: head } = api.headline(monitor);
  const names = api.metricNames(answer.metrics);
  const alerted = new Set((monitor.spec.alerts || []).map((a) => a.metric));
  const order = [head, ...names.filter((n) => n !== head && alerted.has(n)), ...names.filter((n) => n !== head && !alerted.has(n))]
    .filter((n) => names.includes(n));
  const withValues = order.filter((n) => steps.some((p) => SOURCES.some((src) => p[GROUP[src]]?.[n]?.value != null)));
  const idle = order.filter((n) => !withValues.includes(n));

  const timeline = h('div', { testid: 'chart-timeline' });
  const counts = h('div', { testid: 'chart-labeled' });
  const grid = h('div.chart-grid');
  const serving = sidecarPanel(sidecar);
  mount(ctx.el, h('section.page', { testid: 'page-monitor' },
    header(ctx, monitor, { window, step }),
    summary(monitor, answer, head),
    h('div.panel.flush-top', h('div.panel-title', h('h2', 'Timeline'), legendNote()), timeline),
    withValues.length ? grid : empty(`No labeled or estimated value in the last ${window}.`, 'no-metrics'),
    idle.length ? h('p.muted.idle', { testid: 'idle-metrics' }, `No values in this window: ${idle.map(fmt.label).join(', ')}.`) : null,
    h('div.panel', counts),
    serving.el,
    events(history)));

  const rows = lanes(monitor, periods);
  const axis = charts.axisFor(rows.map((r) => r.name));
  charts.timelineChart(timeline, { lanes: rows, start, end, marks, axis });
  for (const name of withValues) {
    const el = h('div.panel', { testid: `chart-${name}`, class: name === head ? 'wide' : null });
    grid.append(el);
    const sources = SOURCES.map((src) => ({
      name: src,
      values: steps.map((p) => p[GROUP[src]]?.[name]?.value ?? null),
      lower: steps.map((p) => p[GROUP[src]]?.[name]?.lower ?? null),
      upper: steps.map((p) => p[GROUP[src]]?.[name]?.upper ?? null),
    }));
    charts.metricChart(el, {
      title: fmt.label(name), x, sources, marks, periods: periods.fallback,
      thresholds: thresholdsOf(monitor, name),
      range: api.isProportion(name) ? [0, 1] : null,
      height: name === head ? 210 : 160,
      axis,
    });
  }
  charts.countChart(counts, {
    title: `Predictions and labels per ${fmt.duration(step)}`, x, marks, periods: periods.fallback, axis,
    bars: [
      { name: 'predictions', color: charts.COLORS.samples, values: steps.map((p) => p.samples) },
      { name: 'labeled', color: charts.COLORS.labeled, values: steps.map((p) => p.labeled) },
    ],
  });
  serving.draw({ marks, periods: periods.fallback, axis });
}

const ms = (seconds) => (seconds == null ? fmt.DASH : `${fmt.num(seconds * 1000, 1)} ms`);

/** What the sidecars counted (GET .../sidecar): requests by who answered, errors, latency. */
function sidecarPanel(answer) {
  const total = answer.total;
  const steps = answer.series;
  const x = steps.map((p) => p.start);
  const traffic = h('div', { testid: 'chart-sidecar-requests' });
  const latency = h('div', { testid: 'chart-sidecar-latency' });
  const errors = h('div', { testid: 'chart-sidecar-errors' });
  const reasons = Object.entries(total.errors).sort((a, b) => b[1] - a[1]);
  const dropped = Object.entries(total.records_dropped);
  // Connections tunnelled to the model uncaptured (h2c: gRPC), which a gRPC-only model has alone.
  const passed = Object.entries(total.passthrough || {});
  const uncaptured = passed.length
    ? `uncaptured connections: ${passed.map(([p, n]) => `${p} ${fmt.count(n)}`).join(', ')}` : '';
  const el = h('div.panel', { testid: 'sidecar' },
    h('div.panel-title', h('h2', 'Sidecars'),
      h('span.muted', total.requests
        ? `${fmt.count(total.requests)} requests · error rate ${fmt.pct(total.error_rate, 2)} · latency p50 ${ms(total.latency.p50)}, p99 ${ms(total.latency.p99)}`
          + (reasons.length ? ` · errors: ${reasons.map(([r, n]) => `${r} ${fmt.count(n)}`).join(', ')}` : '')
          + (dropped.length ? ` · records dropped: ${dropped.map(([r, n]) => `${r} ${fmt.count(n)}`).join(', ')}` : '')
          + (uncaptured ? ` · ${uncaptured}` : '')
        : (uncaptured ? `no HTTP request in this window · ${uncaptured}` : 'no sidecar posted its counters in this window'))),
    total.requests ? h('div.chart-grid.three', traffic, latency, errors) : null);
  const draw = (shared) => {
    if (!total.requests) return;
    charts.countChart(traffic, {
      ...shared, title: 'Requests', x, height: 140,
      bars: [
        { name: 'all', color: charts.COLORS.samples, values: steps.map((p) => p.requests) },
        { name: 'fallback', color: charts.COLORS.estimated, values: steps.map((p) => p.served_by.fallback) },
      ],
    });
    charts.lineChart(latency, {
      ...shared, title: 'Latency', x, height: 140, format: ms,
      lines: [
        { name: 'p50', color: charts.COLORS.realized, values: steps.map((p) => p.latency.p50) },
        { name: 'p99', color: charts.COLORS.reviewed, values: steps.map((p) => p.latency.p99) },
        { name: 'model p99', color: charts.COLORS.version, values: steps.map((p) => p.model_latency.p99) },
      ],
    });
    charts.lineChart(errors, {
      ...shared, title: 'Errors · fallback', x, height: 140, format: (v) => fmt.pct(v, 1), range: [0, null],
      lines: [
        { name: 'errors', color: charts.COLORS.threshold, values: steps.map((p) => p.error_rate) },
        { name: 'fallback', color: charts.COLORS.estimated, values: steps.map((p) => p.fallback_share) },
      ],
    });
  };
  return { el, draw };
}

const EVENTS_SHOWN = 8;

/** The window's transitions, newest first: the first few, the rest behind a toggle. */
function events(history) {
  const rows = history.transitions.slice().reverse().map((t) => h('tr', { dataset: { kind: t.kind } },
    h('td', fmt.time(t.at, true)),
    h('td', h('span.badge', { class: KIND_CLASS[t.kind] || null }, KIND_TEXT[t.kind] || t.kind)),
    h('td', t.alert || (t.current ? `${phaseLabel(t.previous)} → ${phaseLabel(t.current)}` : '')),
    h('td.wrap', t.reason)));
  const more = rows.length - EVENTS_SHOWN;
  const body = h('tbody', rows.slice(0, EVENTS_SHOWN));
  const toggle = more > 0 ? h('button.ghost', {
    type: 'button', testid: 'events-more',
    onclick: (e) => { body.replaceChildren(...rows); e.target.remove(); },
  }, `Show ${more} more`) : null;
  return h('div.panel.flush', { testid: 'events' },
    h('div.panel-title.padded', h('h2', 'Events'),
      h('span.muted', history.truncated ? `the newest ${rows.length} of the window` : `${rows.length} in the window`),
      h('span.spacer'), toggle),
    rows.length
      ? h('table.grid', h('thead', h('tr', h('th', 'When'), h('th', 'What'), h('th', 'Of'), h('th', 'Why'))), body)
      : h('p.padded.muted', 'Nothing happened in this window: no alert, fallback or phase change.'));
}

const KIND_TEXT = {
  alert_pending: 'alert pending', alert_firing: 'alert firing', alert_resolved: 'alert resolved',
  fallback_engaged: 'fallback engaged', fallback_disengaged: 'fallback released', phase_changed: 'phase',
};
const KIND_CLASS = {
  alert_pending: 'alert-pending', alert_firing: 'alert-firing', alert_resolved: 'alert-ok',
  fallback_engaged: 'phase-fallbackactive', fallback_disengaged: 'alert-ok',
};

function legendNote() {
  return h('div.key',
    h('span.chip', h('i.swatch-fallback'), 'fallback active'),
    h('span.chip', h('i.swatch-version'), 'model version first seen'),
    h('span.chip', h('i.swatch-threshold'), 'alert threshold'));
}

function summary(monitor, answer, head) {
  const status = monitor.status || {};
  const pick = [['realized', answer.metrics], ['estimated', answer.estimated], ['reviewed', answer.reviewed]];
  const figures = pick.filter(([, group]) => group?.[head]?.value != null);
  const fallback = status.fallback || {};
  const drift = status.drift || {};
  const review = status.review || {};
  const firing = (status.alerts || []).filter((a) => a.state === 'firing');
  return h('div.stats', { testid: 'summary' },
    figures.length
      ? figures.map(([src, group]) => stat(`${fmt.label(head)} · ${src}`, fmt.num(group[head].value),
        group[head].lower != null ? `95% [${fmt.num(group[head].lower)}${fmt.DASH}${fmt.num(group[head].upper)}]` : null, `headline-${src}`))
      : stat(fmt.label(head), fmt.DASH, 'no value in this window', 'headline-realized'),
    stat('Predictions', fmt.count(answer.samples), `labeled ${fmt.count(answer.labeled)} (${answer.samples ? fmt.pct(answer.labeled / answer.samples, 0) : fmt.DASH})`, 'samples'),
    stat('Phase', phaseLabel(status.phase), firing.length ? `firing: ${firing.map((a) => a.name).join(', ')}` : `${plural((status.alerts || []).length, 'alert')}, none firing`, 'phase-stat'),
    stat('Fallback', fallback.active ? 'active' : 'standby', fallback.active ? `since ${fmt.time(fallback.since)}${fallback.reason ? ' · ' + fallback.reason : ''}` : `mode ${fallback.mode || 'auto'}`, 'fallback'),
    stat('Drift', drift.status === 'ok' ? `${(drift.features || []).length}/${drift.profiled ?? 0}` : fmt.DASH,
      drift.status === 'ok' ? `features drifted${drift.prediction ? ' · prediction drifted' : ''}` : (drift.status || 'no reference').replace(/_/g, ' '), 'drift'),
    review.enabled ? stat('Review queue', fmt.count(review.depth), review.oldest ? `oldest ${fmt.ago(review.oldest)}` : review.status, 'review') : null,
    status.report ? stat('Latest report', h('a', { href: status.report.url, target: '_blank', rel: 'noopener', testid: 'latest-report' }, status.report.alert),
      `fired ${fmt.time(status.report.at)}`, 'report') : null);
}

/** Thresholds of the alerts on `metric` (not per feature or segment). */
function thresholdsOf(monitor, metric) {
  return (monitor.spec.alerts || [])
    .filter((a) => a.metric === metric && !a.feature && !a.segment)
    .map((a) => {
      const value = a.below ?? a.above;
      const source = a.source && a.source !== 'realized' ? ` (${a.source})` : '';
      return { value, label: `${a.name}${source} ${a.below != null ? '<' : '>'} ${fmt.num(value)}` };
    })
    .filter((t) => t.value != null);
}

function lanes(monitor, periods) {
  const phase = {
    name: 'phase',
    spans: periods.phases.map(([a, b, p]) => [a, b, phaseLabel(p), charts.PHASE_COLORS[p] || '#94a3b8']),
  };
  const alerts = (monitor.spec.alerts || []).map((a) => ({
    name: a.name,
    spans: (periods.alerts[a.name] || []).map(([s, e]) => [s, e, 'firing', '#d42a2a']),
  }));
  const fallback = { name: 'fallback', spans: periods.fallback.map(([s, e]) => [s, e, 'active', '#e0701a']) };
  return [phase, ...alerts, fallback];
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
