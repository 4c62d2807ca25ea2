// eventlog.js: the attached session's feed (sip, media, dtmf, event, log, error, session,
// console entries) as a log, newest at the bottom, coloured by kind, auto-scrolled while
// the reader is at the bottom.

import { h, fmtClock, atBottom } from './dom.js';

const MAX_ENTRIES = 1000;

export class EventLog {
  constructor(container) {
    this.el = container;
  }

  clear() {
    this.el.replaceChildren();
  }

  /** entry: {t, session, kind, text}; replayed: from the attach history. */
  add(entry, replayed = false) {
    const kind = String(entry.kind || 'other');
    this._append(h('div', { class: `ev ev-${kind.replace(/[^a-z0-9_-]/gi, '_')}${replayed ? ' ev-history' : ''}`,
                            'data-kind': kind },
      h('span', { class: 'ev-time' }, fmtClock(entry.t)), ' ',
      h('span', { class: 'ev-kind' }, kind), ' ',
      h('span', { class: 'ev-text' }, String(entry.text ?? ''))));
  }

  /** A line of the page's own (attached, ended, connection lost). */
  note(text, kind = 'note') {
    this._append(h('div', { class: `ev ev-${kind}`, 'data-kind': kind },
      h('span', { class: 'ev-time' }, fmtClock(Date.now() / 1000)), ' ',
      h('span', { class: 'ev-kind' }, kind), ' ',
      h('span', { class: 'ev-text' }, text)));
  }

  _append(row) {
    const stick = atBottom(this.el);
    this.el.append(row);
    while (this.el.childElementCount > MAX_ENTRIES) this.el.firstElementChild.remove();
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  }
}
