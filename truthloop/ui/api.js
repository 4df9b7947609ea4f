// The feedback service's JSON API (docs/api.md), read from the same origin as the page.

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body?.details?.[0];
    super(detail ? `${body.error}: ${detail.field ? detail.field + ': ' : ''}${detail.message}` : body?.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** `/v1/monitors/ns/name` + `suffix`, names escaped. */
export function monitorPath(ns, name, suffix = '') {
  return `/v1/monitors/${encodeURIComponent(ns)}/${encodeURIComponent(name)}${suffix}`;
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value != null && value !== '') query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(method, path, { params, body, token, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    const href = url(path, params);
    const started = method === 'GET' && !token ? globalThis.truthloop.take(href) : undefined;
    response = await (started || fetch(href, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    }));
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: 'the service cannot be reached' });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.slice(0, 200) }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, params, signal) => request('GET', path, { params, signal });
export const post = (path, body, token) => request('POST', path, { body, token });
export const lease = (path, params, token) => request('GET', path, { params, token });

// Metrics where less is better (the compare endpoint's verdicts agree).
const LOWER_IS_BETTER = new Set(['mae', 'rmse', 'mape', 'brier_score', 'log_loss', 'cost', 'mean_error']);
export const lowerIsBetter = (metric) => LOWER_IS_BETTER.has(metric);

// Metrics bounded to [0, 1].
const UNBOUNDED = new Set(['mae', 'rmse', 'mape', 'log_loss', 'cost', 'mean_error', 'r2']);
export const isProportion = (metric) => !UNBOUNDED.has(metric);

/** The metric the monitor is judged by: its first alert's, else accuracy or MAE. */
export function headline(monitor) {
  const alert = (monitor.spec.alerts || []).find((a) => a.metric && !a.metric.includes(':'));
  if (alert) return { metric: alert.metric, source: alert.source || 'realized' };
  return { metric: monitor.spec.task === 'regression' ? 'mae' : 'accuracy', source: 'realized' };
}

// Counts and totals beside the metrics, not charted as metrics.
const NOT_METRICS = new Set(['mape_excluded', 'cost_total']);

/** Metric names of an answer's `metrics` object that have a value and interval. */
export function metricNames(metrics) {
  return Object.entries(metrics || {})
    .filter(([name, m]) => m && typeof m === 'object' && 'value' in m && !NOT_METRICS.has(name))
    .map(([name]) => name);
}

/** Monitor names as `ns/name`. */
export const key = (m) => `${m.metadata.namespace}/${m.metadata.name}`;
