// Every monitor at a glance: phase, the headline metric with its interval and sparkline,
// labeled, fallback, drift and review; filter by namespace.

import * as api from '../api.js';
import * as charts from '../charts.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { alertBadge, empty, phaseBadge, windowOf } from './frame.js';

export const refreshes = true;
// A sparkline's points: one every 2 pixels.
const SPARK_POINTS = 70;

export async function render(ctx) {
  const { items } = await api.get('/v1/monitors');
  if (!ctx.current()) return;
  const namespaces = [...new Set(items.map((m) => m.metadata.namespace))].sort();
  const ns = ctx.params.get('ns') || '';
  const shown = items.filter((m) => !ns || m.metadata.namespace === ns);
  const filter = h('select', {
    testid: 'namespace-filter', 'aria-label': 'namespace',
    onchange: (e) => ctx.go(ctx.link({ ns: e.target.value })),
  }, h('option', { value: '' }, `All namespaces (${items.length})`),
  namespaces.map((n) => h('option', { value: n, selected: n === ns }, n)));
  const counts = {};
  for (const m of shown) counts[m.status?.phase || 'Pending'] = (counts[m.status?.phase || 'Pending'] || 0) + 1;
  const rows = shown.map((m) => row(ctx, m));
  mount(ctx.el, h('section.page', { testid: 'page-overview' },
    h('div.page-head',
      h('h1', 'Monitors'),
      h('span.facts', Object.entries(counts).map(([p, n]) => h('span.count', phaseBadge(p), ' ', n))),
      h('span.spacer'),
      filter),
    shown.length
      ? h('div.panel.flush', h('table.grid.overview', { testid: 'monitors' },
        h('thead', h('tr',
          h('th', 'Monitor'), h('th', 'Phase'), h('th', 'Headline metric'), h('th.num', 'Interval (95%)'),
          h('th', 'Trend'), h('th.num', 'Labeled'), h('th', 'Fallback'), h('th', 'Drift'),
          h('th', 'Alerts'), h('th.num', 'Review'))),
        h('tbody', rows.map((r) => r.tr))))
      : empty(items.length ? `No monitor in namespace ${ns}.` : 'No monitor is registered yet: apply a ModelMonitor, or PUT one to /v1/monitors/{namespace}/{name}.')));
  await Promise.all(rows.map((r) => r.spark()));
}

function row(ctx, m) {
  const { namespace, name } = m.metadata;
  const st = m.status || {};
  const { metric, source } = api.headline(m);
  const metrics = st.metrics || {};
  const realized = { value: metrics[metric], lower: metrics[`${metric}Lower`], upper: metrics[`${metric}Upper`] };
  const estimated = { value: metrics[`${metric}Estimated`], lower: metrics[`${metric}EstimatedLower`], upper: metrics[`${metric}EstimatedUpper`] };
  const reviewed = { value: metrics[`${metric}Reviewed`], lower: metrics[`${metric}ReviewedLower`], upper: metrics[`${metric}ReviewedUpper`] };
  const pick = source === 'estimated' ? [estimated, 'estimated'] : source === 'reviewed' ? [reviewed, 'reviewed']
    : realized.value != null ? [realized, 'realized'] : estimated.value != null ? [estimated, 'estimated'] : [realized, 'realized'];
  const [shown, kind] = pick;
  const href = ctx.link('m', namespace, name);
  const cell = h('td.spark-cell');
  const drift = st.drift || {};
  const fallback = st.fallback || {};
  const alerts = st.alerts || [];
  const firing = alerts.filter((a) => a.state === 'firing');
  const tr = h('tr', { testid: `monitor-${namespace}-${name}`, dataset: { href } },
    h('td', h('a.name', { href }, h('span.ns', namespace, '/'), name), h('div.sub', m.spec.task, m.spec.model?.name ? ` · ${m.spec.model.name}` : '')),
    h('td', phaseBadge(st.phase)),
    h('td', h('span.metric-name', fmt.label(metric)), ' ', h('span.source', { class: `src-${kind}` }, kind)),
    h('td.num', h('strong', fmt.num(shown.value)), h('span.muted', shown.lower != null ? ` [${fmt.num(shown.lower)}${fmt.DASH}${fmt.num(shown.upper)}]` : '')),
    cell,
    h('td.num', fmt.count(st.labeled), h('span.muted', ` / ${fmt.count(st.samples)}`)),
    h('td', fallback.active ? h('span.badge.alert-firing', 'active') : h('span.muted', fallback.mode === 'auto' || !fallback.mode ? 'standby' : fallback.mode),
      fallback.active && fallback.reason ? h('div.sub', fallback.reason) : null),
    h('td', drift.status === 'ok'
      ? h('span', { class: drift.drifted ? 'warn' : null }, `${(drift.features || []).length}/${drift.profiled ?? 0} drifted`)
      : h('span.muted', (drift.status || 'no reference').replace(/_/g, ' '))),
    h('td', firing.length ? alertBadge('firing') : alerts.length ? h('span.muted', `${alerts.length} ok`) : h('span.muted', 'none'),
      firing.length ? h('div.sub', firing.map((a) => a.name).join(', ')) : null),
    h('td.num', st.review?.enabled ? fmt.count(st.review.depth) : h('span.muted', fmt.DASH)));
  tr.addEventListener('click', (e) => { if (!(e.target instanceof HTMLAnchorElement)) ctx.go(href); });
  const spark = async () => {
    const window = windowOf(ctx, m);
    try {
      const answer = await api.get(api.monitorPath(namespace, name, '/metrics'), { window, points: SPARK_POINTS });
      const group = kind === 'realized' ? 'metrics' : kind;
      const points = (answer.series || []).map((p) => ({ at: p.start, ...(p[group]?.[metric] || {}) }));
      cell.replaceChildren(charts.sparkline(points), h('div.sub', window));
    } catch (e) {
      cell.replaceChildren(h('span.muted', fmt.DASH));
    }
  };
  return { tr, spark };
}
