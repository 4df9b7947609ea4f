// Model versions of the window with their traffic and metrics, and two of them compared: each
// metric's difference with its 95% interval and the verdict on b.

import * as api from '../api.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { empty, header, intervalBar, windowOf } from './frame.js';

const MAX_WINDOW = 90 * 86400;
const SOURCES = ['realized', 'estimated', 'reviewed'];

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const window = windowOf(ctx, monitor);
  const capped = fmt.parseDuration(window) > MAX_WINDOW ? '90d' : window;
  const listed = await api.get(`${path}/versions`, { window: capped });
  if (!ctx.current()) return;
  const versions = listed.versions;
  const head = header(ctx, monitor, { window });
  if (!versions.length) {
    mount(ctx.el, h('section.page', { testid: 'page-versions' }, head, empty(`No model records in the last ${capped}.`)));
    return;
  }
  const { metric } = api.headline(monitor);
  const names = api.metricNames(versions.find((v) => api.metricNames(v.metrics).length)?.metrics)
    .filter((n) => n !== 'approval_rate');
  const shown = [metric, ...names.filter((n) => n !== metric)].slice(0, 3);
  const names_ = versions.map((v) => v.version);
  const a = names_.includes(ctx.params.get('a')) ? ctx.params.get('a') : names_[0];
  const b = names_.includes(ctx.params.get('b')) ? ctx.params.get('b') : names_.at(-1);
  const source = SOURCES.includes(ctx.params.get('source')) ? ctx.params.get('source') : 'realized';
  const go = (change) => ctx.go(ctx.link('m', ctx.ns, ctx.name, 'versions', { w: ctx.params.get('w'), a, b, source, ...change }));
  const pick = (value, testid, key) => h('select', { testid, onchange: (e) => go({ [key]: e.target.value }) },
    names_.map((n) => h('option', { value: n, selected: n === value }, n || '(none)')));
  const table = h('div.panel.flush',
    h('div.panel-title.padded', h('h2', `${versions.length} model version${versions.length === 1 ? '' : 's'} in the last ${capped}`),
      listed.truncated ? h('span.warn', 'more versions had records: the 100 latest are shown') : null),
    h('table.grid', { testid: 'versions' },
      h('thead', h('tr', h('th', 'Version'), h('th', 'First seen'), h('th', 'Last'), h('th.num', 'Share'), h('th.num', 'Samples'), h('th.num', 'Labeled'),
        shown.map((n) => h('th', fmt.label(n))))),
      h('tbody', versions.map((v) => h('tr', { testid: `version-${v.version}` },
        h('td', h('strong', v.version || '(none)')),
        h('td', fmt.time(v.first)), h('td', fmt.time(v.last)),
        h('td.num', fmt.pct(v.share)), h('td.num', fmt.count(v.samples)), h('td.num', fmt.count(v.labeled)),
        shown.map((n) => h('td', intervalBar(v.metrics?.[n], n))))))));
  const compareEl = h('div.panel.flush', { testid: 'compare' });
  mount(ctx.el, h('section.page', { testid: 'page-versions' }, head, table, compareEl));
  const controls = h('div.panel-title.padded',
    h('h2', 'Compare'), pick(b, 'compare-b', 'b'), h('span.muted', 'against'), pick(a, 'compare-a', 'a'),
    h('div.segmented', { role: 'group', 'aria-label': 'source' }, SOURCES.map((src) =>
      h('button', { type: 'button', class: src === source ? 'active' : null, testid: `source-${src}`, onclick: () => go({ source: src }) }, src))));
  if (a === b) {
    mount(compareEl, controls, h('p.padded.muted', 'Pick two different versions to compare.'));
    return;
  }
  const compared = await api.get(`${path}/compare`, { a, b, window: capped, source });
  if (!ctx.current()) return;
  const rows = Object.entries(compared.metrics).filter(([, m]) => m.a != null || m.b != null);
  mount(compareEl, controls,
    h('p.padded.muted', `${b} (${fmt.count(compared.b.labeled)} labeled) − ${a} (${fmt.count(compared.a.labeled)} labeled), ${source} metrics. `,
      'A verdict is better or worse when the 95% interval of the difference leaves out 0.'),
    rows.length
      ? h('table.grid', { testid: 'comparison' },
        h('thead', h('tr', h('th', 'Metric'), h('th.num', a), h('th.num', b), h('th.num', 'Difference'), h('th.num', '95% interval'), h('th', 'Verdict on ' + b), h('th.num', 'More labels needed'))),
        h('tbody', rows.map(([name, m]) => h('tr', { testid: `compare-${name}` },
          h('td', fmt.label(name)),
          h('td.num', fmt.num(m.a)), h('td.num', fmt.num(m.b)),
          h('td.num', h('strong', m.difference == null ? fmt.DASH : (m.difference > 0 ? '+' : '') + fmt.num(m.difference))),
          h('td.num', m.lower == null ? fmt.DASH : `[${fmt.num(m.lower)}, ${fmt.num(m.upper)}]`),
          h('td', h('span.badge', { class: `verdict-${m.verdict}` }, m.verdict.replace('_', ' '))),
          h('td.num', m.more_labels == null ? fmt.DASH : fmt.count(m.more_labels))))))
      : h('p.padded.muted', `No ${source} metric both versions have in this window.`));
}
