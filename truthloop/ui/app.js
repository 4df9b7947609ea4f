// The page shell: hash routes to pages, the breadcrumbs, refresh. Pages render into <main>.
//   #/                      overview (?ns= filters a namespace)
//   #/m/{ns}/{name}         the monitor: metrics over time (?w= window)
//   #/m/{ns}/{name}/{tab}   drift, segments, versions, review, reports

import { h, isTyping, mount } from './dom.js';
import * as fmt from './fmt.js';
import * as overview from './pages/overview.js';
import * as monitor from './pages/monitor.js';
import * as drift from './pages/drift.js';
import * as segments from './pages/segments.js';
import * as versions from './pages/versions.js';
import * as review from './pages/review.js';
import * as reports from './pages/reports.js';

const TABS = { '': monitor, drift, segments, versions, review, reports };
const REFRESH_EVERY = 60_000;

const main = document.getElementById('app');
const crumbs = document.querySelector('[data-testid=crumbs]');
const updated = document.querySelector('[data-testid=updated]');
let generation = 0;
let timer = 0;

function parse(hash) {
  const [path, query] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  if (parts[0] === 'm' && parts.length >= 3 && (parts[3] || '') in TABS) {
    return { page: TABS[parts[3] || ''], ns: parts[1], name: parts[2], tab: parts[3] || '', params };
  }
  return { page: overview, params, tab: null };
}

/** The hash of a route: link('m', ns, name, 'drift', {w: '6h'}). */
function link(...parts) {
  const params = typeof parts.at(-1) === 'object' ? parts.pop() : null;
  const path = '#/' + parts.filter((p) => p != null && p !== '').map(encodeURIComponent).join('/');
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== '')).toString() : '';
  return query ? `${path}?${query}` : path;
}

function breadcrumbs(route) {
  const items = [h('a', { href: '#/' }, 'Monitors')];
  if (route.ns) {
    items.push(h('span.sep', '/'), h('a', { href: link('m', route.ns, route.name, { w: route.params.get('w') }) }, `${route.ns}/${route.name}`));
  }
  mount(crumbs, items);
}

async function render({ quiet = false } = {}) {
  const mine = ++generation;
  const route = parse(location.hash);
  breadcrumbs(route);
  clearTimeout(timer);
  const ctx = {
    ...route,
    el: main,
    current: () => mine === generation,
    link,
    go: (hash) => { location.hash = hash; },
  };
  if (!quiet) {
    main.style.minHeight = '';
    main.dataset.state = 'loading';
  } else {
    main.style.minHeight = `${main.offsetHeight}px`;
  }
  try {
    await route.page.render(ctx);
    if (!ctx.current()) return;
    main.dataset.state = 'ready';
    updated.textContent = `updated ${fmt.time(Date.now() / 1000, true)}`;
    performance.mark('truthloop:drawn');
  } catch (e) {
    if (!ctx.current()) return;
    main.dataset.state = 'error';
    mount(main, h('div.panel.error-panel', { testid: 'error' }, h('h2', 'Could not load this page'), h('p', e.message)));
  } finally {
    if (ctx.current()) main.style.minHeight = '';
  }
  if (route.page.refreshes && ctx.current()) {
    timer = setTimeout(() => { if (!document.hidden) render({ quiet: true }); }, REFRESH_EVERY);
  }
}

window.addEventListener('hashchange', () => render());
document.querySelector('[data-testid=refresh]').addEventListener('click', () => render({ quiet: true }));
document.addEventListener('keydown', (e) => {
  if (e.key === 'r' && !e.ctrlKey && !e.metaKey && !e.altKey && !isTyping(e) && parse(location.hash).tab !== 'review') {
    render({ quiet: true });
  }
});

render();
