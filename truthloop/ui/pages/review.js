// The review queue, one leased item at a time: its inputs, prediction and score; the label by
// keyboard (binary 0 and 1, other classes 1..9), u unsure, s skip. Leasing and labeling need the
// token (asked once, session.js); labels go to POST /v1/feedback with source review.

import * as api from '../api.js';
import { h, isTyping, mount } from '../dom.js';
import * as fmt from '../fmt.js';
import * as session from '../session.js';
import { empty, header, stat } from './frame.js';

let done = 0;
let keys = null;

export async function render(ctx) {
  const path = api.monitorPath(ctx.ns, ctx.name);
  const monitor = await api.get(path);
  if (!ctx.current()) return;
  const head = header(ctx, monitor, { picker: false });
  if (keys) document.removeEventListener('keydown', keys);
  keys = null;
  if (!monitor.spec.review) {
    mount(ctx.el, h('section.page', { testid: 'page-review' }, head,
      empty('This monitor has no review queue: add spec.review to queue predictions for human review.', 'no-review')));
    return;
  }
  const item = h('div.panel', { testid: 'review-item' });
  const side = h('div.panel', { testid: 'review-side' });
  mount(ctx.el, h('section.page', { testid: 'page-review' }, head, h('div.review', item, side)));
  const view = { ctx, monitor, path, item, side, current: null, queue: null, note: null, busy: false };
  keys = (e) => onKey(view, e);
  document.addEventListener('keydown', keys);
  drawSide(view);
  if (session.credentials()) {
    await next(view);
    return;
  }
  mount(item, h('div.empty', { testid: 'review-signed-out' },
    h('p', 'Leasing items needs your name and, when the service has one, a token.'),
    h('button.primary', { testid: 'review-start', onclick: () => start(view) }, 'Start reviewing')));
  start(view);
}

async function start(view) {
  if (session.credentials() || await session.signIn()) await next(view);
}

/** Lease the next item (limit 1) and show it. */
async function next(view) {
  const who = session.credentials();
  if (!who || !view.ctx.current()) return;
  mount(view.item, h('p.muted', 'Leasing the next item…'));
  let answer;
  try {
    answer = await api.lease(`${view.path}/review`, { reviewer: who.reviewer, limit: 1 }, who.token);
  } catch (e) {
    return refused(view, e, () => next(view));
  }
  if (!view.ctx.current()) return;
  view.queue = answer.queue;
  view.current = answer.items[0] || null;
  drawSide(view);
  drawItem(view);
}

async function answer(view, body, what) {
  const who = session.credentials();
  const item = view.current;
  if (!who || !item || view.busy) return;
  view.busy = true;
  try {
    await api.post('/v1/feedback', {
      items: [{ monitor: `${view.ctx.ns}/${view.ctx.name}`, prediction_id: item.prediction_id, source: 'review', reviewer: who.reviewer, ...body }],
    }, who.token);
    done += 1;
    view.note = `${item.prediction_id}: ${what}`;
    await next(view);
  } catch (e) {
    await refused(view, e, () => answer(view, body, what));
  } finally {
    view.busy = false;
  }
}

/** A refused lease or label: a token the service does not take asks again, else the error. */
async function refused(view, e, retry) {
  if (e.status === 401 || e.status === 403) {
    session.signOut();
    if (await session.signIn(e.status === 401 ? 'The service did not take that token.' : e.message)) return retry();
    mount(view.item, h('div.empty', { testid: 'review-signed-out' }, h('p.error', e.message),
      h('button.primary', { testid: 'review-start', onclick: () => start(view) }, 'Sign in again')));
    return;
  }
  mount(view.item, h('div', { testid: 'review-error' }, h('p.error', e.message), h('button', { onclick: () => next(view) }, 'Next item')));
}

/** The answers an item offers: [key, label text, body]. */
function choices(view, item) {
  const task = view.monitor.spec.task;
  if (task === 'binary') {
    const asNumber = typeof item.prediction === 'number' || /^[01]$/.test(String(item.prediction));
    return [0, 1].map((c) => [String(c), String(c), { actual: asNumber ? c : c === 1 }]);
  }
  if (task === 'multiclass') {
    const classes = item.score && typeof item.score === 'object' ? Object.keys(item.score) : [];
    if (!classes.includes(String(item.prediction))) classes.unshift(String(item.prediction));
    return classes.slice(0, 9).map((c, i) => [String(i + 1), c, { actual: c }]);
  }
  return [];
}

function drawItem(view) {
  const item = view.current;
  if (!item) {
    mount(view.item, h('div.empty', { testid: 'review-empty' },
      h('p', 'Nothing to review: the queue has no item for you right now.'),
      h('button', { onclick: () => next(view) }, 'Check again')));
    return;
  }
  const options = choices(view, item);
  const regression = view.monitor.spec.task === 'regression';
  const value = regression ? h('input', { type: 'number', step: 'any', testid: 'review-value', placeholder: 'true value', 'aria-label': 'true value' }) : null;
  const features = item.features;
  const rows = features && typeof features === 'object'
    ? Object.entries(features).map(([k, v]) => h('tr', h('th', k), h('td', typeof v === 'object' ? JSON.stringify(v) : String(v))))
    : [h('tr', h('td', features == null ? 'no features captured' : String(features)))];
  const score = typeof item.score === 'number' ? item.score : null;
  mount(view.item,
    h('div.item-head',
      h('span.muted', 'Prediction'), h('span.prediction', { testid: 'review-prediction' }, String(item.prediction)),
      score != null ? h('span', h('span.score-bar', h('span', { style: `width:${score * 100}%` })), ` score ${fmt.num(score)}`) : null,
      h('span.spacer'),
      h('span.badge', { testid: 'review-reason' }, item.reason),
      item.abstained ? h('span.badge.alert-pending', 'abstained') : null,
      item.outlier ? h('span.badge.alert-firing', 'outlier') : null),
    h('table.kv', { testid: 'review-features' },
      h('tbody', rows,
        h('tr', h('th', 'prediction id'), h('td', item.prediction_id)),
        h('tr', h('th', 'model version'), h('td', item.model_version || '(none)')),
        h('tr', h('th', 'predicted at'), h('td', fmt.time(item.ts, true))),
        h('tr', h('th', 'inclusion π'), h('td', `${fmt.num(item.pi)} (stands for ${fmt.num(1 / item.pi, 1)} records)`)),
        item.votes?.length ? h('tr', h('th', 'votes'), h('td', item.votes.map((v) => `${v.reviewer}: ${v.value}`).join(', '))) : null,
        h('tr', h('th', 'leased until'), h('td', fmt.time(Date.parse(item.lease_until) / 1000, true))))),
    h('div.answers', { testid: 'review-answers' },
      options.map(([key, text, body]) => h('button.primary', { testid: `label-${text}`, onclick: () => answer(view, body, `labeled ${text}`) }, h('kbd', key), text)),
      value,
      regression ? h('button.primary', { testid: 'label-value', onclick: () => submitValue(view, value) }, h('kbd', '⏎'), 'Label') : null,
      h('button', { testid: 'review-unsure', onclick: () => answer(view, { decision: 'unsure' }, 'unsure') }, h('kbd', 'u'), 'Unsure'),
      h('button', { testid: 'review-skip', onclick: () => answer(view, { decision: 'skip' }, 'skipped') }, h('kbd', 's'), 'Skip')));
  view.options = options;
  view.value = value;
  value?.focus();
}

function submitValue(view, input) {
  const v = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(v)) return input.focus();
  return answer(view, { actual: v }, `labeled ${v}`);
}

function onKey(view, e) {
  if (!view.item.isConnected || document.getElementById('token-dialog').open || e.ctrlKey || e.metaKey || e.altKey) return;
  if (view.value && e.target === view.value) {
    if (e.key === 'Enter') submitValue(view, view.value);
    return;
  }
  if (isTyping(e) || !view.current) return;
  const hit = (view.options || []).find(([key]) => key === e.key);
  if (hit) answer(view, hit[2], `labeled ${hit[1]}`);
  else if (e.key === 'u') answer(view, { decision: 'unsure' }, 'unsure');
  else if (e.key === 's') answer(view, { decision: 'skip' }, 'skipped');
  else return;
  e.preventDefault();
}

function drawSide(view) {
  const who = session.credentials();
  const q = view.queue;
  const review = view.monitor.status?.review || {};
  mount(view.side,
    h('h2', 'Queue'),
    h('div.stats.one',
      stat('Waiting', fmt.count(q?.depth ?? review.depth), q ? `${fmt.count(q.leased)} leased` : null, 'queue-depth'),
      stat('Answered here', String(done), view.note, 'review-done')),
    h('p.muted', q?.oldest ? `Oldest waiting since ${fmt.time(q.oldest)}.` : ''),
    h('h2', 'Keys'),
    h('p.muted', 'Binary: ', h('kbd', '0'), h('kbd', '1'), ' the true class. Other classes: ', h('kbd', '1'), '…', h('kbd', '9'), '. ',
      h('kbd', 'u'), 'unsure (back to the queue, three close it), ', h('kbd', 's'), 'skip (someone else takes it).'),
    who ? h('p.muted', { testid: 'review-who' }, `Reviewing as ${who.reviewer}. `,
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); session.signOut(); start(view); } }, 'Switch')) : null);
}
