// The reports the service made when an alert fired, newest first: each a self-contained page.

import * as api from '../api.js';
import { h, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import { empty, header } from './frame.js';

export const refreshes = true;

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const head = header(ctx, monitor, { picker: false });
  const { reports } = await api.get(`${path}/reports`);
  if (!ctx.current()) return;
  mount(ctx.el, h('section.page', { testid: 'page-reports' }, head,
    reports.length
      ? h('div.panel.flush',
        h('div.panel-title.padded', h('h2', `${reports.length} report${reports.length === 1 ? '' : 's'}, newest first`),
          h('span.muted', 'made when an alert fires: the window\'s metrics, drift, segments, versions, wrong predictions and the likely causes')),
        h('table.grid', { testid: 'reports' },
          h('thead', h('tr', h('th', 'Fired'), h('th', 'Alert'), h('th', 'Summary'), h('th.num', 'Size'), h('th', ''))),
          h('tbody', reports.map((r) => h('tr', { testid: `report-${r.id}` },
            h('td', fmt.time(r.at, true)),
            h('td', h('span.badge.alert-firing', r.alert)),
            h('td.wrap', r.summary || ''),
            h('td.num', r.size != null ? `${fmt.count(Math.round(r.size / 1024))} KB` : fmt.DASH),
            h('td', h('a', { href: r.url, target: '_blank', rel: 'noopener', testid: `report-link-${r.id}` }, 'Open'), ' · ',
              h('a', { href: `${r.url}.json`, target: '_blank', rel: 'noopener' }, 'JSON')))))))
      : empty('No report yet: the service makes one each time an alert fires.', 'no-reports')));
}
