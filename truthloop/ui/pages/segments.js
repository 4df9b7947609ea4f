// A segment's values worst first (by the metric of its first alert, else accuracy or MAE), each
// with its interval; and, for a segment with drift, each value's drift.

import * as api from '../api.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { empty, header, intervalBar, windowOf } from './frame.js';

const COLUMNS = 4;

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const window = windowOf(ctx, monitor);
  const declared = monitor.spec.segments || [];
  const head = header(ctx, monitor, { window });
  if (!declared.length) {
    mount(ctx.el, h('section.page', { testid: 'page-segments' }, head,
      empty('This monitor declares no segments (spec.segments): its metrics are kept for all traffic only.', 'no-segments')));
    return;
  }
  const chosen = declared.find((d) => d.name === ctx.params.get('segment')) || declared[0];
  const picker = h('select', {
    testid: 'segment-picker', 'aria-label': 'segment',
    onchange: (e) => ctx.go(ctx.link('m', ctx.ns, ctx.name, 'segments', { w: ctx.params.get('w'), segment: e.target.value })),
  }, declared.map((d) => h('option', { value: d.name, selected: d === chosen }, `segment ${d.name}`)));
  head.querySelector('.tools').prepend(picker);
  const [metrics, drift] = await Promise.all([
    api.get(`${path}/metrics`, { window, segment: chosen.name }),
    chosen.drift ? api.get(`${path}/drift`, { window, segment: chosen.name }) : null,
  ]);
  if (!ctx.current()) return;
  const segment = metrics.segment;
  const by = segment.by;
  const [source, metric] = by.includes(':') ? by.split(':') : ['realized', by];
  const group = { realized: 'metrics', estimated: 'estimated', reviewed: 'reviewed' }[source] || 'metrics';
  const first = segment.values.find((v) => api.metricNames(v.metrics).length);
  const others = api.metricNames(first?.metrics).filter((n) => n !== metric && n !== 'approval_rate').slice(0, COLUMNS);
  const minSamples = monitor.spec.metrics?.minSamples ?? 0;
  mount(ctx.el, h('section.page', { testid: 'page-segments' },
    head,
    h('div.panel.flush',
      h('div.panel-title.padded', h('h2', `${chosen.name}: ${segment.values.length} values, worst first by ${fmt.label(metric)}${source !== 'realized' ? ` (${source})` : ''}`),
        h('span.muted', `values with fewer than ${minSamples} labeled come after those with enough`)),
      segment.values.length
        ? h('table.grid', { testid: 'segments' },
          h('thead', h('tr', h('th', 'Value'), h('th.num', 'Samples'), h('th.num', 'Labeled'),
            h('th', `${fmt.label(metric)} (95%)`), others.map((n) => h('th.num', fmt.label(n))),
            h('th.num', 'Estimated'), h('th.num', 'Reviewed'))),
          h('tbody', segment.values.map((v, rank) => h('tr', { testid: `segment-${v.value}`, dataset: { rank: String(rank) } },
            h('td', h('strong', v.value)),
            h('td.num', fmt.count(v.samples)),
            h('td.num', { class: v.labeled < minSamples ? 'faint' : null }, fmt.count(v.labeled)),
            h('td', intervalBar(v[group]?.[metric], metric)),
            others.map((n) => h('td.num', fmt.num(v.metrics?.[n]?.value))),
            h('td.num', fmt.num(v.estimated?.[metric]?.value)),
            h('td.num', fmt.num(v.reviewed?.[metric]?.value))))))
        : empty(`No records in the last ${window}.`)),
    drift ? driftTable(drift.segment) : null));
}

function driftTable(segment) {
  return h('div.panel.flush', { testid: 'segment-drift' },
    h('div.panel-title.padded', h('h2', `Drift per value, worst first by ${fmt.label(segment.by)}`)),
    h('table.grid',
      h('thead', h('tr', h('th', 'Value'), h('th.num', 'Records'), h('th.num', fmt.label(segment.by)), h('th.num', 'Features drifted'), h('th', 'Drifted'))),
      h('tbody', segment.values.map((v) => h('tr',
        h('td', h('strong', v.value)),
        h('td.num', fmt.count(v.samples)),
        h('td.num', fmt.num(v.metric)),
        h('td.num', fmt.pct(v.share, 0)),
        h('td', v.drifted ? h('span.badge.alert-firing', v.features.join(', ') || 'drifted') : h('span.muted', v.status === 'ok' ? 'stable' : v.status.replace(/_/g, ' '))))))));
}
