// sessionlist.js: the live sessions list (#sessions) and a few recently ended ones, greyed.
// Entries are updated in place on every poll so focus and selection survive; arrow keys
// move between entries, Enter or Space (or a click) selects one.

import { h, setText, fmtDuration } from './dom.js';

export class SessionList {
  constructor(list, onSelect) {
    this.list = list;
    this.onSelect = onSelect;
    this.items = new Map();   // session id -> {li, fields}
    this.sep = h('li', { class: 'sess-sep', role: 'presentation' }, 'recently ended');
    this.empty = h('li', { class: 'sess-empty', role: 'presentation' }, 'no live sessions');
    list.addEventListener('keydown', (ev) => this._keydown(ev));
  }

  /** live: sessions oldest first; ended: newest first; selected: the selected id or null. */
  render(live, ended, selected) {
    const want = [];
    const seen = new Set();
    for (const sess of live) { want.push([sess, false]); seen.add(sess.id); }
    for (const sess of ended) if (!seen.has(sess.id)) want.push([sess, true]);

    const keep = new Set(want.map(([sess]) => sess.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) { item.li.remove(); this.items.delete(id); }
    }

    const order = [];
    if (live.length === 0) order.push(this.empty);
    let sepAdded = false;
    for (const [sess, isEnded] of want) {
      if (isEnded && !sepAdded) { order.push(this.sep); sepAdded = true; }
      let item = this.items.get(sess.id);
      if (!item) { item = this._make(sess.id); this.items.set(sess.id, item); }
      this._fill(item, sess, isEnded, sess.id === selected);
      order.push(item.li);
    }
    this._order(order);

    // Roving tabindex: the selected entry (else the first) is the one Tab reaches.
    const lis = [...this.items.values()].map((i) => i.li);
    const tabbable = lis.find((li) => li.dataset.session === selected) || this.list.querySelector('li[data-session]');
    for (const li of lis) li.tabIndex = li === tabbable ? 0 : -1;
  }

  _make(id) {
    const f = {
      id: h('span', { class: 'mono sess-id' }, id),
      state: h('span', { class: 'sess-state' }),
      scenario: h('span', { class: 'sess-scenario' }),
      age: h('span', { class: 'sess-age mono' }),
      calls: h('span', { class: 'sess-calls' }),
    };
    const li = h('li', { class: 'sess', role: 'option', 'data-session': id, tabindex: -1 },
      h('div', { class: 'sess-line' }, f.id, ' ', f.state),
      h('div', { class: 'sess-line sess-sub' }, f.scenario, ' \u00b7 ', f.age, ' \u00b7 ', f.calls));
    li.addEventListener('click', () => this.onSelect(id));
    return { li, f };
  }

  _fill(item, sess, isEnded, isSelected) {
    const { li, f } = item;
    const calls = Array.isArray(sess.calls) ? sess.calls : [];
    const up = calls.filter((c) => c.state !== 'DISCONNECTED' && c.state !== 'FAILED').length;
    setText(f.state, isEnded ? `ended${sess.end_reason ? ' (' + sess.end_reason + ')' : ''}` : sess.state);
    f.state.className = `sess-state state-${isEnded ? 'ended' : sess.state}`;
    setText(f.scenario, sess.scenario || '?');
    setText(f.age, fmtDuration(sess.age));
    setText(f.calls, `${calls.length} call${calls.length === 1 ? '' : 's'}${up && up !== calls.length ? ` (${up} up)` : ''}`);
    li.classList.toggle('ended', isEnded);
    li.classList.toggle('selected', isSelected);
    const sel = isSelected ? 'true' : 'false';
    if (li.getAttribute('aria-selected') !== sel) li.setAttribute('aria-selected', sel);
    li.title = `${sess.id} ${sess.scenario || ''} ${isEnded ? 'ended' : sess.state}`;
  }

  /** Put the children in this order, moving only what is out of place; keep the focus. */
  _order(order) {
    const current = [...this.list.children];
    if (current.length === order.length && current.every((el, i) => el === order[i])) return;
    const focused = document.activeElement;
    const hadFocus = this.list.contains(focused);
    for (const el of current) if (!order.includes(el)) el.remove();
    order.forEach((el, i) => {
      if (this.list.children[i] !== el) this.list.insertBefore(el, this.list.children[i] || null);
    });
    if (hadFocus && focused.isConnected && document.activeElement !== focused) focused.focus();
  }

  _keydown(ev) {
    const li = ev.target.closest('li[data-session]');
    if (!li) return;
    const all = [...this.list.querySelectorAll('li[data-session]')];
    const i = all.indexOf(li);
    let next = null;
    switch (ev.key) {
      case 'Enter':
      case ' ':
        ev.preventDefault();
        this.onSelect(li.dataset.session);
        return;
      case 'ArrowDown': next = all[i + 1]; break;
      case 'ArrowUp': next = all[i - 1]; break;
      case 'Home': next = all[0]; break;
      case 'End': next = all[all.length - 1]; break;
      default: return;
    }
    ev.preventDefault();
    if (next) {
      for (const el of all) el.tabIndex = el === next ? 0 : -1;
      next.focus();
    }
  }
}
