// ws.js: a small JSON-over-WebSocket client. One JSON object per text frame;
// requests get an `id` and a promise of the reply with that id; frames with an
// `event` field go to event listeners; the socket reconnects with backoff.

export function wsUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${path}`;
}

export class JsonSocket {
  /**
   * @param {string} url  ws:// or wss:// URL
   * @param {object} [opts]
   *   minDelay / maxDelay: reconnect backoff bounds (ms)
   *   requestTimeout: default time to wait for a reply (ms; 0 = no limit)
   *   connectWait: how long a request made while disconnected waits for the socket (ms)
   */
  constructor(url, opts = {}) {
    this.url = url;
    this.minDelay = opts.minDelay ?? 500;
    this.maxDelay = opts.maxDelay ?? 10000;
    this.requestTimeout = opts.requestTimeout ?? 15000;
    this.connectWait = opts.connectWait ?? 5000;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();     // id -> {resolve, reject, timer}
    this.listeners = new Map();   // event name -> Set(fn); '*' gets every event
    this.statusListeners = new Set();
    this.waiters = new Set();     // resolvers waiting for 'open'
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = true;
    this.nextRetryAt = null;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) this.ws.close(1000, 'client stopped');
  }

  /** Listen to a server event by name ('feed', 'state', ... or '*'); returns an unsubscribe function. */
  onEvent(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name).delete(fn);
  }

  /** fn({connected: bool, retryIn: ms|null, error}) on every open/close. */
  onStatus(fn) {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  /**
   * Send {id, op, ...fields} and resolve with the reply object (ok true or false).
   * Rejects when the socket is not open (after waiting connectWait), closes before the
   * reply, or the reply takes longer than timeout (ms; 0 waits without a limit).
   */
  async request(op, fields = {}, { timeout = this.requestTimeout } = {}) {
    if (!this.connected) await this._waitOpen(this.connectWait);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      if (timeout > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`no answer to "${op}" after ${Math.round(timeout / 1000)} s`));
        }, timeout);
      }
      this.pending.set(id, entry);
      try {
        this.ws.send(JSON.stringify({ ...fields, id, op }));
      } catch (err) {
        clearTimeout(entry.timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  /** Like request(), but rejects with the server's error when the reply has ok:false. */
  async call(op, fields = {}, opts = {}) {
    const reply = await this.request(op, fields, opts);
    if (!reply.ok) throw new Error(reply.error || `${op} failed`);
    return reply;
  }

  _waitOpen(ms) {
    if (this.connected) return Promise.resolve();
    if (this.stopped) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) => {
      const waiter = { resolve: () => { clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error('not connected to the server'));
      }, ms);
      this.waiters.add(waiter);
    });
  }

  /** A short text for a status line: "" when connected, else when the next attempt is. */
  retryText() {
    if (this.connected) return '';
    if (this.nextRetryAt === null) return this.stopped ? '' : 'connecting\u2026';
    return `retrying in ${Math.max(1, Math.ceil((this.nextRetryAt - Date.now()) / 1000))} s`;
  }

  _open() {
    this.nextRetryAt = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleRetry(err);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.nextRetryAt = null;
      this._status({ connected: true, retryIn: null });
      for (const w of this.waiters) w.resolve();
      this.waiters.clear();
    };
    ws.onmessage = (ev) => this._message(ev.data);
    ws.onerror = () => { /* onclose follows and does the work */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const err = new Error(`connection closed${ev.reason ? ': ' + ev.reason : ''}`);
      for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(err); }
      this.pending.clear();
      if (this.stopped) {
        this._status({ connected: false, retryIn: null });
      } else {
        this._scheduleRetry(err);
      }
    };
  }

  _scheduleRetry(error) {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt = Math.min(this.attempt + 1, 16);
    this.nextRetryAt = Date.now() + delay;
    this._status({ connected: false, retryIn: delay, error });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { this.retryTimer = null; if (!this.stopped) this._open(); }, delay);
  }

  _message(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('ws: a frame that is not JSON', data);
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if ('id' in msg && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      p.resolve(msg);
      return;
    }
    if (typeof msg.event === 'string') {
      for (const name of [msg.event, '*']) {
        for (const fn of this.listeners.get(name) || []) {
          try { fn(msg); } catch (err) { console.error('ws listener failed', err); }
        }
      }
    }
  }

  _status(s) {
    for (const fn of this.statusListeners) {
      try { fn(s); } catch (err) { console.error('ws status listener failed', err); }
    }
  }
}
