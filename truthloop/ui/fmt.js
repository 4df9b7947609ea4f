// Formatting numbers, intervals, times and durations for people.

export const DASH = '–';

export function num(v, digits = 3) {
  if (v == null || Number.isNaN(v)) return DASH;
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  if (Number.isInteger(v) && a < 1e5) return String(v);
  return v.toFixed(a >= 100 ? 1 : digits);
}

export function count(v) {
  if (v == null) return DASH;
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(v >= 1e5 ? 0 : 1) + 'k';
  return v.toLocaleString('en');
}

export function pct(v, digits = 1) {
  return v == null ? DASH : (v * 100).toFixed(digits) + '%';
}

/** "0.812 [0.78–0.84]" */
export function interval(m, digits = 3) {
  if (!m || m.value == null) return DASH;
  if (m.lower == null || m.upper == null) return num(m.value, digits);
  return `${num(m.value, digits)} [${num(m.lower, digits)}${DASH}${num(m.upper, digits)}]`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local time: "Dec 6 14:05" (with seconds when `seconds`). */
export function time(epoch, seconds = false) {
  if (epoch == null) return DASH;
  const d = new Date(epoch * 1000);
  const month = d.toLocaleString('en', { month: 'short' });
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ':' + pad(d.getSeconds()) : ''}`;
  return `${month} ${d.getDate()} ${clock}`;
}

const UNITS = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];

/** 90 → "1m30s", 7200 → "2h" (two units at most). */
export function duration(seconds) {
  if (seconds == null) return DASH;
  let rest = Math.max(0, Math.round(seconds));
  const parts = [];
  for (const [unit, size] of UNITS) {
    if (rest >= size && parts.length < 2) {
      parts.push(Math.floor(rest / size) + unit);
      rest %= size;
    } else if (parts.length) break;
  }
  return parts.join('') || '0s';
}

/** "5m" → 300; null for what is no duration. */
export function parseDuration(text) {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text || '');
  if (!m || !text) return null;
  const [d, hh, mm, ss] = m.slice(1).map((x) => Number(x || 0));
  return d * 86400 + hh * 3600 + mm * 60 + ss;
}

export function ago(epoch, now = Date.now() / 1000) {
  if (epoch == null) return DASH;
  return duration(Math.max(0, now - epoch)) + ' ago';
}

/** A metric's name for people: balanced_accuracy → "balanced accuracy". */
export function label(name) {
  if (NAMES[name]) return NAMES[name];
  const text = name.replace(/_/g, ' ').replace(/\b(mae|rmse|mape|auc|roc|psi|ks|f1)\b/g, (w) => w.toUpperCase());
  return text.charAt(0).toUpperCase() + text.slice(1);
}

const NAMES = { r2: 'R²' };
