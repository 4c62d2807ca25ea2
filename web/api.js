// api.js: the page's config (./config.json) and fetches of the HTTP API with its bearer token.

let configPromise = null;

/** {api_token, version, sip}; fetched once (again after a failure). */
export function getConfig() {
  if (!configPromise) {
    configPromise = fetch('./config.json', { cache: 'no-store', credentials: 'same-origin' })
      .then(async (r) => {
        if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
        return r.json();
      })
      .catch((err) => {
        configPromise = null;
        throw err;
      });
  }
  return configPromise;
}

/**
 * GET an /api/... path with the bearer token. as: 'json' (default) or 'blob'.
 * Throws Error("404 no such recording") style messages from the API's {"error": ...}.
 */
export async function apiGet(path, { as = 'json', signal } = {}) {
  const cfg = await getConfig();
  const r = await fetch(path, {
    headers: { Authorization: `Bearer ${cfg.api_token}` },
    credentials: 'same-origin',
    cache: 'no-store',
    signal,
  });
  if (!r.ok) {
    let message = r.statusText;
    try {
      const body = await r.json();
      if (body && body.error) message = body.error;
    } catch { /* not JSON */ }
    throw new Error(`HTTP ${r.status}: ${message}`);
  }
  return as === 'blob' ? r.blob() : r.json();
}

/** "/api/history" + {scenario: 'x', reason: ''} -> "/api/history?scenario=x" (empty values left out) */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && String(v).trim() !== '') q.set(k, String(v).trim());
  }
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}
