// history.js: the "History & recordings" tab: the call history table from /api/history
// (filters: scenario, finish reason, limit) and the list of /api/recordings, each one
// fetched with the API token and played in the page.

import { h, setText, fmtDateTime, fmtBytes, safe } from './dom.js';
import { apiGet, withQuery } from './api.js';

export class HistoryView {
  /** els: {form, scenario, reason, limit, table, status, recordings, recStatus, recRefresh} */
  constructor(els) {
    this.els = els;
    this.recItems = new Map();   // name -> {li, url}
    this.historySeq = 0;
    els.form.addEventListener('submit', (ev) => { ev.preventDefault(); safe(() => this.refreshHistory())(); });
    els.recRefresh.addEventListener('click', safe(() => this.refreshRecordings()));
  }

  refresh() {
    safe(() => this.refreshHistory())();
    safe(() => this.refreshRecordings())();
  }

  async refreshHistory() {
    const e = this.els;
    const seq = ++this.historySeq;
    const path = withQuery('/api/history', { scenario: e.scenario.value, reason: e.reason.value, limit: e.limit.value });
    this._status(e.status, 'loading\u2026');
    let data;
    try {
      data = await apiGet(path);
    } catch (err) {
      if (seq === this.historySeq) this._status(e.status, `history: ${err.message}`, true);
      return;
    }
    if (seq !== this.historySeq) return;
    const rows = Array.isArray(data.sessions) ? data.sessions : [];
    const tbody = e.table.tBodies[0];
    tbody.replaceChildren(...rows.map((r) => h('tr', { 'data-session': r.id, class: r.ended ? null : 'running' },
      h('td', { class: 'mono' }, r.id),
      h('td', {}, r.scenario ?? ''),
      h('td', { class: 'mono' }, r.rule ?? ''),
      h('td', { class: 'mono' }, fmtDateTime(r.started)),
      h('td', { class: 'mono' }, r.ended ? fmtDateTime(r.ended) : 'running'),
      h('td', { class: `reason reason-${r.finish_reason || 'none'}` }, r.finish_reason ?? ''),
      h('td', { class: 'num' }, r.calls ?? ''),
      h('td', { class: 'custom', title: fmtCustom(r.custom_data) }, fmtCustom(r.custom_data, 60)))));
    if (rows.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 8, class: 'placeholder' }, 'no sessions match')));
    this._status(e.status, `${rows.length} session${rows.length === 1 ? '' : 's'} \u00b7 updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
  }

  async refreshRecordings() {
    const e = this.els;
    this._status(e.recStatus, 'loading\u2026');
    let data;
    try {
      data = await apiGet('/api/recordings');
    } catch (err) {
      this._status(e.recStatus, `recordings: ${err.message}`, true);
      return;
    }
    const recs = Array.isArray(data.recordings) ? data.recordings : [];
    recs.sort((a, b) => (b.modified || 0) - (a.modified || 0));
    const names = new Set(recs.map((r) => r.name));
    for (const [name, item] of this.recItems) {
      if (!names.has(name)) {
        if (item.url) URL.revokeObjectURL(item.url);
        item.li.remove();
        this.recItems.delete(name);
      }
    }
    e.recordings.querySelector('.placeholder')?.remove();
    recs.forEach((r, i) => {
      let item = this.recItems.get(r.name);
      if (!item) { item = this._makeRecording(r); this.recItems.set(r.name, item); }
      setText(item.meta, `${fmtBytes(r.size)} \u00b7 ${fmtDateTime(r.modified)}`);
      if (e.recordings.children[i] !== item.li) e.recordings.insertBefore(item.li, e.recordings.children[i] || null);
    });
    if (recs.length === 0) e.recordings.append(h('li', { class: 'placeholder' }, 'no recordings yet'));
    this._status(e.recStatus, `${recs.length} recording${recs.length === 1 ? '' : 's'}`);
  }

  _makeRecording(r) {
    const name = r.name;
    const meta = h('span', { class: 'rec-meta' });
    const play = h('button', { type: 'button', class: 'small', 'aria-label': `Play ${name}` }, 'Play');
    const player = h('div', { class: 'rec-player' });
    const li = h('li', { 'data-recording': name },
      h('div', { class: 'rec-line' }, h('span', { class: 'mono rec-name' }, name), ' ', meta, ' ', play),
      player);
    const item = { li, meta, url: null };
    play.addEventListener('click', safe(async () => {
      if (item.url) {
        player.querySelector('audio')?.play().catch(() => {});
        return;
      }
      play.disabled = true;
      setText(play, 'Loading\u2026');
      try {
        const blob = await apiGet(`/api/recordings/${encodeURIComponent(name)}`, { as: "blob" });
        item.url = URL.createObjectURL(blob);
        const audio = h('audio', { controls: true, src: item.url, preload: 'auto', 'aria-label': `recording ${name}` });
        player.replaceChildren(audio,
          h('a', { href: item.url, download: name, class: 'rec-download' }, 'Download'));
        audio.play().catch(() => { /* autoplay refused: the controls are there */ });
        setText(play, 'Play');
      } catch (err) {
        player.replaceChildren(h('span', { class: 'bad' }, err.message));
        setText(play, 'Retry');
      } finally {
        play.disabled = false;
      }
    }));
    return item;
  }

  _status(el, text, bad = false) {
    setText(el, text);
    el.classList.toggle('bad', bad);
  }
}

function fmtCustom(v, max = 0) {
  if (v === null || v === undefined) return '';
  const t = typeof v === 'string' ? v : JSON.stringify(v);
  return max && t.length > max ? t.slice(0, max - 1) + '\u2026' : t;
}
