// callstable.js: the selected session's calls (#calls): state, parties, codec, duration,
// RTP counters and in/out level meters. Rows are updated in place; a click or Enter on a
// row makes it the call the actions and the SIP ladder are about.

import { h, setText, fmtDuration, makeMeter, setMeterDb } from './dom.js';

export const ENDED_STATES = new Set(['DISCONNECTED', 'FAILED']);

export class CallsTable {
  constructor(table, onSelect) {
    this.table = table;
    this.tbody = table.tBodies[0] || table.appendChild(h('tbody'));
    this.onSelect = onSelect;
    this.rows = new Map();   // call id -> {tr, cells}
    this.emptyRow = h('tr', { class: 'calls-empty' }, h('td', { colspan: 11 }, 'no calls in this session'));
  }

  clear() {
    this.rows.clear();
    this.tbody.replaceChildren();
  }

  render(calls, selectedCall) {
    calls = Array.isArray(calls) ? calls : [];
    const ids = new Set(calls.map((c) => c.id));
    for (const [id, row] of this.rows) {
      if (!ids.has(id)) { row.tr.remove(); this.rows.delete(id); }
    }
    if (calls.length === 0) {
      if (!this.emptyRow.isConnected) this.tbody.append(this.emptyRow);
      return;
    }
    this.emptyRow.remove();
    calls.forEach((c, i) => {
      let row = this.rows.get(c.id);
      if (!row) { row = this._make(c.id); this.rows.set(c.id, row); }
      if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
      this._fill(row, c, c.id === selectedCall);
    });
  }

  _make(id) {
    const td = (cls) => h('td', { class: cls });
    const cells = {
      id: td('mono id'), state: td('state'), parties: td('parties'), codec: td('codec mono'),
      duration: td('num mono duration'), rx: td('num mono rx'), tx: td('num mono tx'),
      lost: td('num mono lost'), jitter: td('num mono jitter'), levels: td('levels'), reason: td('reason'),
    };
    cells.id.textContent = id;
    const inMeter = makeMeter(`${id} level in`);
    const outMeter = makeMeter(`${id} level out`);
    cells.levels.append(h('span', { class: 'meter-pair' }, h('span', { class: 'meter-label' }, 'in'), inMeter),
                        h('span', { class: 'meter-pair' }, h('span', { class: 'meter-label' }, 'out'), outMeter));
    const tr = h('tr', { 'data-call': id, tabindex: 0, 'aria-selected': 'false' }, Object.values(cells));
    tr.addEventListener('click', () => this.onSelect(id));
    tr.addEventListener('keydown', (ev) => {
      if (ev.target === tr && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        this.onSelect(id);
      }
    });
    return { tr, cells, inMeter, outMeter };
  }

  _fill(row, c, selected) {
    const { tr, cells } = row;
    const rtp = c.rtp || null;
    setText(cells.state, c.state);
    cells.state.dataset.state = c.state;
    setText(cells.parties, `${c.callerid || '?'} \u2192 ${c.destination || '?'}`);
    setText(cells.codec, c.codec || '\u2013');
    setText(cells.duration, fmtDuration(c.duration));
    setText(cells.rx, rtp ? rtp.rx_packets ?? 0 : '\u2013');
    setText(cells.tx, rtp ? rtp.tx_packets ?? 0 : '\u2013');
    setText(cells.lost, rtp ? rtp.lost ?? 0 : '\u2013');
    setText(cells.jitter, rtp && rtp.jitter_ms !== undefined && rtp.jitter_ms !== null ? Number(rtp.jitter_ms).toFixed(1) : '\u2013');
    setText(cells.reason, c.end_reason || '');
    const lv = c.levels || null;
    setMeterDb(row.inMeter, lv ? lv.in : null);
    setMeterDb(row.outMeter, lv ? lv.out : null);
    tr.classList.toggle('ended', ENDED_STATES.has(c.state));
    tr.classList.toggle('selected', selected);
    const sel = selected ? 'true' : 'false';
    if (tr.getAttribute('aria-selected') !== sel) tr.setAttribute('aria-selected', sel);
    tr.title = rtp && rtp.remote ? `remote ${rtp.remote}${rtp.latched ? ' (latched)' : ''}` : '';
  }
}
