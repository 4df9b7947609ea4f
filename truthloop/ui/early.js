// Loaded first, as a classic script (the CSP forbids inline ones): starts the API reads the
// address's page begins with while the stylesheets and modules still load, so the page takes
// their answers (api.js asks `take`) instead of waiting for its modules to ask. Each is taken
// once; a read the page then asks with other parameters (a narrower <main>) is fetched anew.
(() => {
  const MAIN_MAX_WIDTH = 1480; // style.css: main { max-width }
  const TABS = ['', 'drift', 'segments', 'versions', 'review', 'reports'];
  const started = new Map();

  /** Points for a chart `width` pixels wide: one every 4 pixels, 60 to 1,000. The service picks
   * the step (`points=N` reads the series at the smallest step of its ladder that draws the
   * window in at most about N points). */
  const pointsFor = (width) => Math.max(60, Math.min(1000, Math.round(width / 4)));

  /** The started read of `url`, once (then undefined). */
  function take(url) {
    const response = started.get(url);
    started.delete(url);
    return response;
  }

  function start(url) {
    const response = fetch(url, { headers: { Accept: 'application/json' } });
    response.catch(() => {}); // the page that takes it reports the failure
    started.set(url, response);
  }

  const [path, query] = location.hash.replace(/^#/, '').split('?');
  let parts = [];
  try {
    parts = path.split('/').filter(Boolean).map((p) => encodeURIComponent(decodeURIComponent(p)));
  } catch { /* a malformed address: the page says so */ }
  const w = new URLSearchParams(query || '').get('w');
  if (parts[0] === 'm' && parts.length >= 3 && TABS.includes(parts[3] || '')) {
    const monitor = `/v1/monitors/${parts[1]}/${parts[2]}`;
    start(monitor);
    // The metrics page with a window in the address needs nothing of the monitor to ask.
    if (!parts[3] && /^(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?$/.test(w) && /[1-9]/.test(w)) {
      const window = new URLSearchParams({ window: w }).toString();
      const points = pointsFor(Math.min(document.documentElement.clientWidth, MAIN_MAX_WIDTH));
      start(`${monitor}/metrics?${window}&points=${points}`);
      start(`${monitor}/history?${window}`);
      start(`${monitor}/sidecar?${window}&points=${points}`);
    }
  } else {
    start('/v1/monitors');
  }
  globalThis.truthloop = Object.freeze({ pointsFor, take });
})();
