// repl.js: the REPL panel bound to the attached session: a textarea (Enter evaluates,
// Shift+Enter adds a line, Up/Down walk a history kept in localStorage, Tab completes,
// Esc then Tab leaves the field) and an output log of evaluations, their printed output,
// results, tracebacks, and the later `output` / `deferred` events of `<Deferred #n>`.

import { h, atBottom, safe } from './dom.js';

const HISTORY_KEY = 'voxlab.repl.history';
const HISTORY_MAX = 500;

export class Repl {
  /**
   * els: {input, output, choices, status}
   * backend: {evaluate(source) -> Promise<reply>, complete(source, cursor) -> Promise<reply>,
   *           ready() -> null | "why not"}
   */
  constructor(els, backend) {
    this.input = els.input;
    this.output = els.output;
    this.choicesEl = els.choices;
    this.statusEl = els.status;
    this.backend = backend;
    this.history = loadHistory();
    this.hIndex = this.history.length;
    this.draft = '';
    this.running = 0;
    this.choices = [];
    this.choiceIndex = -1;
    this.choiceContext = null;
    this.tabLeaves = false;
    this.completeSeq = 0;
    this.input.addEventListener('keydown', (ev) => this._keydown(ev));
    this.input.addEventListener('input', () => this._closeChoices());
    this.input.addEventListener('blur', () => setTimeout(() => {
      if (document.activeElement !== this.input) this._closeChoices();
    }, 150));
    this._status('');
  }

  /** Clear the output (a new session was attached). */
  clear() {
    this.output.replaceChildren();
    this._closeChoices();
  }

  /** A note that is not an evaluation: the attach banner, "session ended", ... */
  note(text, cls = 'repl-note') {
    this._append(h('pre', { class: cls }, text), true);
  }

  /** Evaluate `source` and show it as an entry; label marks entries made by the action buttons. */
  async run(source, { label = null } = {}) {
    const why = this.backend.ready();
    const entry = h('div', { class: label ? 'repl-entry repl-action' : 'repl-entry' },
      h('pre', { class: 'repl-src' }, promptLines(source, label)));
    if (why) {
      entry.append(h('pre', { class: 'repl-error' }, why));
      this._append(entry, true);
      return { ok: false, error: why };
    }
    this.running++;
    this._status();
    let reply;
    try {
      reply = await this.backend.evaluate(source);
    } catch (err) {
      reply = { ok: false, error: err.message || String(err) };
    } finally {
      this.running--;
      this._status();
    }
    this._fill(entry, reply);
    this._append(entry, true);
    return reply;
  }

  /** An `output` event: text printed after an await by the cell of <Deferred #n>. */
  onOutput(ev) {
    const box = this._asyncEntry(ev.n);
    if (ev.text) box.append(h('pre', { class: 'repl-out' }, ev.text));
    this._scroll();
  }

  /** A `deferred` event: <Deferred #n> fired (result) or failed (error). */
  onDeferred(ev) {
    const box = this._asyncEntry(ev.n);
    if (ev.error !== undefined && ev.error !== null) {
      box.append(h('pre', { class: 'repl-error' }, `Deferred #${ev.n} failed:\n${ev.error}`));
      if (ev.interrupted) box.append(h('div', { class: 'repl-meta' }, 'interrupted: the time budget expired'));
      if (ev.exit) box.append(h('div', { class: 'repl-meta' }, exitText(ev.exit)));
    } else {
      box.append(h('pre', { class: 'repl-result' }, `Deferred #${ev.n} fired: ${ev.result}`));
    }
    box.dataset.done = '1';
    this._scroll();
  }

  // ---- rendering

  _fill(entry, reply) {
    if (!reply.ok) {
      entry.append(h('pre', { class: 'repl-error' }, reply.error || 'failed'));
      return;
    }
    if (reply.output) entry.append(h('pre', { class: 'repl-out' }, reply.output));
    if (reply.result !== null && reply.result !== undefined) {
      entry.append(h('pre', { class: 'repl-result' }, reply.result));
    }
    if (reply.error) entry.append(h('pre', { class: 'repl-error' }, reply.error));
    if (reply.interrupted) {
      entry.append(h('div', { class: 'repl-meta' }, `interrupted: past its budget of ${reply.budget ?? '?'} s`));
    }
    if (reply.exit) entry.append(h('div', { class: 'repl-meta' }, exitText(reply.exit)));
    if (reply.deferred !== null && reply.deferred !== undefined) {
      entry.dataset.deferred = String(reply.deferred);
      entry.append(h('div', { class: 'repl-meta' }, `waiting for Deferred #${reply.deferred}\u2026`));
    }
  }

  _asyncEntry(n) {
    const last = this.output.lastElementChild;
    if (last && last.classList.contains('repl-async') && last.dataset.n === String(n) && !last.dataset.done) {
      return last;
    }
    const box = h('div', { class: 'repl-entry repl-async', 'data-n': String(n) },
      h('div', { class: 'repl-meta' }, `Deferred #${n}`));
    this._append(box, false);
    return box;
  }

  _append(el, force) {
    const stick = force || atBottom(this.output);
    this.output.append(el);
    while (this.output.childElementCount > 500) this.output.firstElementChild.remove();
    if (stick) this.output.scrollTop = this.output.scrollHeight;
  }

  _scroll() {
    this.output.scrollTop = this.output.scrollHeight;
  }

  _status(text) {
    const t = text ?? (this.running ? `running\u2026 (${this.running})` : '');
    this.statusEl.textContent = t || 'Enter runs \u00b7 Shift+Enter new line \u00b7 Tab completes \u00b7 Esc, Tab leaves';
  }

  // ---- keys

  _keydown(ev) {
    if (ev.isComposing) return;
    if (this.choices.length) {
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        const n = this.choices.length;
        this.choiceIndex = (this.choiceIndex + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
        this._renderChoices();
        return;
      }
      if ((ev.key === 'Enter' || ev.key === 'Tab') && !ev.shiftKey && this.choiceIndex >= 0) {
        ev.preventDefault();
        this._insert(this.choices[this.choiceIndex], this.choiceContext);
        this._closeChoices();
        return;
      }
      if (ev.key === 'Escape') {
        ev.preventDefault();
        this._closeChoices();
        return;
      }
    }
    if (ev.key === 'Escape') {
      this.tabLeaves = true;
      this._status('Tab now moves to the next field');
      return;
    }
    if (ev.key === 'Tab') {
      if (ev.shiftKey || ev.ctrlKey || ev.altKey || ev.metaKey || this.tabLeaves || this.input.value === '') {
        this.tabLeaves = false;
        this._status();
        return;  // the browser moves the focus
      }
      ev.preventDefault();
      const cur = this.input.selectionStart;
      const lineStart = this.input.value.lastIndexOf('\n', cur - 1) + 1;
      const before = this.input.value.slice(lineStart, cur);
      if (before.trim() === '') this._replaceSelection('    ');
      else safe(() => this._complete())();
      return;
    }
    this.tabLeaves = false;
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      ev.preventDefault();
      this._submit();
      return;
    }
    if (ev.key === 'ArrowUp' && !ev.shiftKey && this._caretOnFirstLine()) {
      if (this._historyMove(-1)) ev.preventDefault();
      return;
    }
    if (ev.key === 'ArrowDown' && !ev.shiftKey && this._caretOnLastLine()) {
      if (this._historyMove(1)) ev.preventDefault();
    }
  }

  _submit() {
    const source = this.input.value;
    if (source.trim() === '') return;
    this._remember(source);
    this.input.value = '';
    this._closeChoices();
    safe(() => this.run(source))();
  }

  _replaceSelection(text) {
    const { selectionStart: a, selectionEnd: b, value } = this.input;
    this.input.value = value.slice(0, a) + text + value.slice(b);
    this.input.selectionStart = this.input.selectionEnd = a + text.length;
  }

  _caretOnFirstLine() {
    const { selectionStart: a, selectionEnd: b, value } = this.input;
    return a === b && value.lastIndexOf('\n', a - 1) === -1;
  }

  _caretOnLastLine() {
    const { selectionStart: a, selectionEnd: b, value } = this.input;
    return a === b && value.indexOf('\n', a) === -1;
  }

  // ---- history

  _remember(source) {
    if (this.history[this.history.length - 1] !== source) this.history.push(source);
    if (this.history.length > HISTORY_MAX) this.history.splice(0, this.history.length - HISTORY_MAX);
    try { localStorage.setItem(HISTORY_KEY, JSON.stringify(this.history)); } catch { /* storage full or off */ }
    this.hIndex = this.history.length;
    this.draft = '';
  }

  _historyMove(step) {
    const next = this.hIndex + step;
    if (next < 0 || next > this.history.length) return false;
    if (this.hIndex === this.history.length) this.draft = this.input.value;
    this.hIndex = next;
    const text = next === this.history.length ? this.draft : this.history[next];
    this.input.value = text;
    const caret = step < 0 ? (text.indexOf('\n') === -1 ? text.length : text.indexOf('\n')) : text.length;
    this.input.selectionStart = this.input.selectionEnd = caret;
    return true;
  }

  // ---- completion

  async _complete() {
    const source = this.input.value;
    const cursor = this.input.selectionStart;
    const seq = ++this.completeSeq;
    let reply;
    try {
      reply = await this.backend.complete(source, cursor);
    } catch (err) {
      this._status(`completion failed: ${err.message}`);
      return;
    }
    // Drop a late answer once the text has changed.
    if (seq !== this.completeSeq || this.input.value !== source || this.input.selectionStart !== cursor) return;
    if (!reply.ok) {
      this._status(`completion failed: ${reply.error}`);
      return;
    }
    const items = Array.isArray(reply.completions) ? reply.completions : [];
    const ctx = { source, cursor };
    if (items.length === 0) {
      this._status('no completions');
      return;
    }
    if (items.length === 1) {
      this._insert(items[0], ctx);
      this._status();
      return;
    }
    // Insert the common prefix when it adds something, then offer the choices.
    const start = Math.abs(items[0].start || 0);
    if (items.every((c) => Math.abs(c.start || 0) === start)) {
      const common = commonPrefix(items.map((c) => String(c.text)));
      if (common.length > start) {
        this._insert({ text: common, start: -start }, ctx);
        ctx.source = this.input.value;
        ctx.cursor = this.input.selectionStart;
        ctx.shift = common.length - start;
      }
    }
    this.choices = items;
    this.choiceIndex = 0;
    this.choiceContext = ctx;
    this._renderChoices();
    this._status(`${items.length} completions: \u2191\u2193 choose, Enter or Tab inserts, Esc closes`);
  }

  _insert(item, ctx) {
    const value = this.input.value;
    const cursor = ctx ? ctx.cursor : this.input.selectionStart;
    // After the common prefix was inserted, each choice also replaces what that added.
    const replace = Math.abs(item.start || 0) + ((ctx && ctx.shift) || 0);
    const from = Math.max(0, cursor - replace);
    this.input.value = value.slice(0, from) + item.text + value.slice(cursor);
    this.input.selectionStart = this.input.selectionEnd = from + String(item.text).length;
    this.input.focus();
  }

  _renderChoices() {
    const el = this.choicesEl;
    el.replaceChildren();
    this.choices.forEach((c, i) => {
      const li = h('li', { role: 'option', id: `repl-choice-${i}`, class: i === this.choiceIndex ? 'active' : null,
                           'aria-selected': i === this.choiceIndex ? 'true' : 'false' },
        h('span', { class: 'choice-display' }, c.display || c.text),
        c.kind ? h('span', { class: 'choice-kind' }, c.kind) : null,
        c.meta ? h('span', { class: 'choice-meta' }, c.meta) : null);
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault();
        this._insert(c, this.choiceContext);
        this._closeChoices();
      });
      el.append(li);
    });
    el.hidden = this.choices.length === 0;
    if (this.choiceIndex >= 0) {
      this.input.setAttribute('aria-activedescendant', `repl-choice-${this.choiceIndex}`);
      el.children[this.choiceIndex]?.scrollIntoView({ block: 'nearest' });
    }
  }

  _closeChoices() {
    if (!this.choices.length && this.choicesEl.hidden) return;
    this.choices = [];
    this.choiceIndex = -1;
    this.choiceContext = null;
    this.choicesEl.replaceChildren();
    this.choicesEl.hidden = true;
    this.input.removeAttribute('aria-activedescendant');
    this._status();
  }
}

function promptLines(source, label) {
  const lines = String(source).replace(/\n+$/, '').split('\n');
  const first = label ? `[${label}] ` : 'voxlab> ';
  return lines.map((l, i) => (i === 0 ? first : '...     ') + l).join('\n');
}

function exitText(exit) {
  const msg = exit.message ? `: ${exit.message}` : '';
  return `the cell called exit(${exit.code ?? ''}) (status ${exit.status})${msg}; ignored, the session keeps running`;
}

function commonPrefix(strings) {
  if (!strings.length) return '';
  let p = strings[0];
  for (const s of strings.slice(1)) {
    let i = 0;
    while (i < p.length && i < s.length && p[i] === s[i]) i++;
    p = p.slice(0, i);
  }
  return p;
}

function loadHistory() {
  try {
    const v = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(v) ? v.filter((x) => typeof x === 'string') : [];
  } catch {
    return [];
  }
}
