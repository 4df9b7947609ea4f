// Drift against the reference: the dataset's share over time, then per feature (and the
// prediction, the score) its statistic over time and the reference vs current histogram.

import * as api from '../api.js';
import * as charts from '../charts.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { empty, header, pointsFor, stat, windowOf } from './frame.js';

export const refreshes = true;

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const window = windowOf(ctx, monitor);
  const version = ctx.params.get('version') || null;
  const points = pointsFor((ctx.el.clientWidth || 1000) / 2);
  const answer = await api.get(`${path}/drift`, { window, version, points });
  if (!ctx.current()) return;
  const report = answer.drift;
  const status = monitor.status || {};
  const marks = (status.versions || []).map((v) => ({ at: v.first_seen, label: v.version || '(none)' }));
  const versions = h('select', {
    testid: 'version-picker', 'aria-label': 'model version',
    onchange: (e) => ctx.go(ctx.link('m', ctx.ns, ctx.name, 'drift', { w: ctx.params.get('w'), version: e.target.value })),
  }, h('option', { value: '' }, 'All versions, default reference'),
  (status.versions || []).map((v) => h('option', { value: v.version, selected: v.version === version }, `${v.version} (its reference)`)));
  const head = header(ctx, monitor, { window, step: answer.step });
  head.querySelector('.tools').prepend(versions);
  if (report.status === 'no_reference') {
    mount(ctx.el, h('section.page', { testid: 'page-drift' }, head,
      empty('No reference yet: upload one (truthloop reference, or POST …/reference) or set spec.drift.reference to measure drift.', 'no-reference')));
    return;
  }
  const series = answer.series || [];
  const x = series.map((p) => p.start);
  const overall = h('div.panel', { testid: 'chart-drift-share' });
  const grid = h('div.feature-grid');
  const features = [...report.features, ...report.predictions];
  mount(ctx.el, h('section.page', { testid: 'page-drift' },
    head,
    summary(report),
    overall,
    features.length ? grid : empty('No feature was measured in this window.')));
  charts.lineChart(overall, {
    title: 'Drift over time', x, marks, format: (v) => fmt.pct(v, 0), range: [0, 1],
    thresholds: report.dataset?.threshold != null ? [{ value: report.dataset.threshold, label: `dataset drift ≥ ${fmt.pct(report.dataset.threshold, 0)}` }] : [],
    lines: [
      { name: 'features drifted', color: charts.COLORS.realized, values: series.map((p) => (p.status === 'ok' ? p.share : null)) },
      { name: 'outlier records', color: charts.COLORS.estimated, values: series.map((p) => (p.status === 'ok' ? p.outlier_ratio : null)) },
    ],
  });
  for (const f of features) {
    const over = h('div', { testid: `chart-drift-${f.name}` });
    const card = h('div.panel', { testid: `feature-${f.name}` },
      h('div.feature-head',
        h('h3', f.name),
        h('span.sub', `${f.kind} · ${f.method}`),
        f.drifted ? h('span.badge.alert-firing', 'drifted') : h('span.badge.alert-ok', 'stable'),
        h('span.spacer'),
        h('span.muted', f.p_value != null
          ? `${f.method} ${fmt.num(f.statistic)} · p ${fmt.num(f.p_value)} (drifted at p < ${fmt.num(f.threshold)})`
          : `${f.method} ${fmt.num(f.statistic)} (drifted at ≥ ${fmt.num(f.threshold)})`)),
      h('div.feature-body', over, h('div', { testid: `histogram-${f.name}` }, histogramOf(f))),
      h('div.quality',
        h('span', `samples ${fmt.count(f.samples)}`),
        h('span', `missing ${fmt.pct(f.missing_ratio)}`),
        h('span', `wrong type ${fmt.pct(f.wrong_type_ratio)}`),
        f.out_of_range_ratio != null ? h('span', `out of range ${fmt.pct(f.out_of_range_ratio)}`) : null,
        f.new_category_ratio != null ? h('span', `new categories ${fmt.pct(f.new_category_ratio)}`) : null));
    grid.append(card);
    const values = report.predictions.includes(f)
      ? series.map((p) => (isPredictionColumn(report, f) ? p.prediction_drift ?? null : null))
      : series.map((p) => p.statistics?.[f.name] ?? null);
    if (!values.some((v) => v != null)) {
      mount(over, h('p.muted', 'No distance over time for this column.'));
      continue;
    }
    const thresholds = alertThresholds(monitor, f.name);
    if (f.distance_method === f.method && f.threshold != null) thresholds.push({ value: f.threshold, label: `drift ≥ ${fmt.num(f.threshold)}` });
    charts.lineChart(over, {
      title: fmt.label(f.distance_method || 'distance'), x, marks, thresholds, height: 150,
      lines: [{ name: f.name, color: charts.COLORS.realized, values }],
    });
  }
}

/** Only the column that the prediction drift is measured on carries the series' value. */
function isPredictionColumn(report, f) {
  return report.prediction_drift?.column === f.name;
}

function summary(report) {
  const ds = report.dataset;
  const pd = report.prediction_drift;
  const ref = report.reference;
  return h('div.stats', { testid: 'drift-summary' },
    stat('Features drifted', ds ? `${ds.count}/${ds.tested}` : fmt.DASH, ds ? `${fmt.pct(ds.share, 0)} · dataset drift at ${fmt.pct(ds.threshold, 0)}${ds.drifted ? ' · drifted' : ''}` : null, 'drift-share'),
    stat('Prediction drift', pd ? fmt.num(pd.statistic) : fmt.DASH, pd ? `${pd.column} ${pd.method} vs ${fmt.num(pd.threshold)}${pd.drifted ? ' · drifted' : ''}` : null, 'prediction-drift'),
    stat('Outliers', report.outliers ? fmt.pct(report.outliers.ratio) : fmt.DASH, report.outliers ? `${fmt.count(report.outliers.count)} records` : null, 'outliers'),
    stat('Records measured', fmt.count(report.samples), report.status === 'ok' ? null : report.status.replace(/_/g, ' '), 'drift-samples'),
    stat('Reference', ref ? `#${ref.id}` : fmt.DASH, ref ? `${ref.version || 'default'} · ${fmt.count(ref.rows)} rows · ${ref.source} ${fmt.time(ref.created)}` : null, 'reference'));
}

function alertThresholds(monitor, feature) {
  return (monitor.spec.alerts || [])
    .filter((a) => a.metric === 'feature_drift' && a.feature === feature && !a.segment)
    .map((a) => ({ value: a.above ?? a.below, label: `${a.name} ${a.above != null ? '>' : '<'} ${fmt.num(a.above ?? a.below)}` }))
    .filter((t) => t.value != null);
}

/** Labels of a histogram's cells: categories, or numeric bins between the reference's edges
 * (with the cells below the first and above the last edge when either side has values). */
function histogramOf(f) {
  const hist = f.histogram;
  if (!hist) return h('span.muted', 'no histogram');
  let labels;
  let { reference, current } = hist;
  if (hist.categories) {
    labels = hist.categories;
  } else {
    const e = hist.edges;
    labels = [`< ${fmt.num(e[0], 2)}`, ...e.slice(0, -1).map((a) => fmt.num(a, 2)), `≥ ${fmt.num(e.at(-1), 2)}`];
    const keep = labels.map((_, i) => (i > 0 && i < labels.length - 1) || reference[i] > 0 || current[i] > 0);
    labels = labels.filter((_, i) => keep[i]);
    reference = reference.filter((_, i) => keep[i]);
    current = current.filter((_, i) => keep[i]);
  }
  return h('div',
    h('div.chart-head', h('h3', 'Reference vs current'), h('div.legend',
      h('span.chip', h('i', { style: 'background:#9aa8bb' }), 'reference'),
      h('span.chip', h('i', { style: `background:${charts.COLORS.realized}` }), 'current'))),
    charts.histogram({ labels, reference, current }));
}
