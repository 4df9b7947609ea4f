// What the pages of one monitor share: its header (name, phase, tabs, window picker), the
// window and step, and the small pieces every page shows.

import * as api from '../api.js';
import { h } from '../dom.js';
import * as fmt from '../fmt.js';

export const WINDOWS = ['1h', '6h', '24h', '7d', '30d'];

const TABS = [
  ['', 'Metrics'], ['drift', 'Drift'], ['segments', 'Segments'], ['versions', 'Versions'],
  ['review', 'Review'], ['reports', 'Reports'],
];

/** Points for a chart `width` pixels wide (early.js, loaded first, says how many). */
export const { pointsFor } = globalThis.truthloop;

/** The window asked for (?w=), else the smallest that holds the monitor's data (from when its
 * first model version was seen), 24h when that is unknown. */
export function windowOf(ctx, monitor) {
  const asked = ctx.params.get('w');
  if (asked && fmt.parseDuration(asked)) return asked;
  const seen = (monitor.status?.versions || []).map((v) => v.first_seen).filter((t) => t != null);
  if (!seen.length) return '24h';
  const span = Date.now() / 1000 - Math.min(...seen);
  return WINDOWS.find((w) => fmt.parseDuration(w) >= span * 0.95) || '30d';
}

export function phaseBadge(phase) {
  return h('span.badge', { class: `phase-${(phase || 'Pending').toLowerCase()}`, testid: 'phase' }, phaseLabel(phase));
}

export function phaseLabel(phase) {
  return phase === 'FallbackActive' ? 'Fallback active' : phase || 'Pending';
}

export function alertBadge(state) {
  return h('span.badge', { class: `alert-${state}` }, state);
}

/** The monitor's header: name, phase, task, tabs, and (when `picker`) the window picker. */
export function header(ctx, monitor, { window, step, picker = true } = {}) {
  const { namespace, name } = monitor.metadata;
  const spec = monitor.spec;
  const tabs = h('nav.tabs', { testid: 'tabs' }, TABS.map(([tab, text]) =>
    h('a', {
      href: ctx.link('m', namespace, name, tab, { w: ctx.params.get('w') }),
      class: tab === ctx.tab ? 'active' : null,
      'aria-current': tab === ctx.tab ? 'page' : null,
      testid: `tab-${tab || 'metrics'}`,
    }, text)));
  const facts = [
    spec.task,
    spec.model?.name && `model ${spec.model.name}`,
    `window ${spec.metrics?.window || '1h'}`,
    spec.metrics?.minSamples != null && `min ${spec.metrics.minSamples} labeled`,
  ].filter(Boolean);
  const tools = h('div.tools');
  if (picker) {
    tools.append(h('div.segmented', { testid: 'window-picker', role: 'group', 'aria-label': 'window' },
      WINDOWS.map((w) => h('a', {
        href: ctx.link('m', namespace, name, ctx.tab, { w }),
        class: w === window ? 'active' : null,
        testid: `window-${w}`,
      }, w))));
  }
  if (step) tools.append(h('span.muted.step', { testid: 'step' }, `step ${fmt.duration(step)}`));
  return h('section.monitor-head',
    h('div.title-row',
      h('h1', h('span.ns', namespace, '/'), name),
      phaseBadge(monitor.status?.phase),
      h('span.facts', facts.join(' · ')),
      h('span.spacer'),
      tools),
    tabs);
}

/** A figure: a label above a value, with an optional note under it. */
export function stat(label, value, note, testid) {
  return h('div.stat', { testid }, h('div.stat-label', label), h('div.stat-value', value), note ? h('div.stat-note', note) : null);
}

/** A metric's value with its interval drawn as a bar on [0, 1] (proportions only). */
export function intervalBar(m, metric) {
  const cell = h('span.ci', fmt.interval(m));
  if (m?.value == null || !api.isProportion(metric) || m.lower == null) return cell;
  const bar = h('span.ci-bar',
    h('span.ci-range', { style: `left:${m.lower * 100}%;width:${Math.max(0.5, (m.upper - m.lower) * 100)}%` }),
    h('span.ci-dot', { style: `left:${m.value * 100}%` }));
  return h('span.ci-wrap', bar, cell);
}

export function empty(text, testid = 'empty') {
  return h('div.panel.empty', { testid }, text);
}
