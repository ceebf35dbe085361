// skald control page: the HTTP API and the live event stream.
// Every request carries the session cookie (same origin); errors become
// ApiError with the server's own message ({"error":{"code","message"}}).

/** An API answer that is not a success. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** "404 not_found: no such route" */
  describe() {
    return `${this.status || 'network'} ${this.code}: ${this.message}`;
  }
}

/** Calls the API; resolves to the parsed JSON (or null for an empty body). */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach skald (${e.message})`);
  }
  const text = await resp.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  if (!resp.ok) {
    const err = json && json.error;
    const message = err && err.message ? err.message : (text || resp.statusText || 'request failed');
    const code = err && err.code ? err.code : 'http_error';
    const e = new ApiError(resp.status, code, message);
    if (resp.status === 401) window.dispatchEvent(new CustomEvent('skald-unauthorized', { detail: e }));
    throw e;
  }
  return json;
}

/** ws:// or wss:// URL of a path on this origin. */
export function wsUrl(path) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}`;
}

/**
 * The live event stream (skald.events.v1) with reconnection.
 * onEvent(event) for each event; onStatus(text, ok) on connect/disconnect;
 * onResync() after a reconnect or a `lagged` notice (refetch state).
 */
export class EventStream {
  constructor({ onEvent, onStatus, onResync }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onResync = onResync;
    this.ws = null;
    this.stopped = true;
    this.delay = 500;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
  }

  connect() {
    if (this.stopped) return;
    const ws = new WebSocket(wsUrl('/api/v1/events'));
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.delay = 500;
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.type === 'hello') {
        this.onStatus('live', true);
        this.onResync();
      } else if (msg.type === 'lagged') {
        this.onResync();
      } else if (msg.kind) {
        this.onEvent(msg);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.onStatus(opened ? 'reconnecting…' : 'event stream unavailable, retrying…', false);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
      // A refused upgrade may be an ended session: let the API say so.
      if (!opened) api('GET', '/api/v1/calls?limit=1').catch(() => {});
    };
  }
}
