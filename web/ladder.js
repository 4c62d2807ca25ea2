// ladder.js: draws a call's SIP message flow (the console's `ladder` op) as a ladder in SVG:
// the peer's lifeline on the left, voxlab's on the right, one labelled arrow per message,
// with the time since the first message.

import { s, h, fmtClock } from './dom.js';

const W = 500;
const TIME_X = 6;
const PEER_X = 76;
const VOX_X = 476;
const TOP = 44;
const ROW = 30;

export class Ladder {
  constructor(container) {
    this.container = container;
    this.key = null;
    this.reset('no call selected');
  }

  /** Show a message instead of a ladder (no call, an error, loading). */
  reset(message) {
    if (this.key === `reset|${message}`) return;
    this.key = `reset|${message}`;
    this.container.replaceChildren(h('p', { class: 'placeholder' }, message));
  }

  /** entries: [{at, direction: 'in'|'out', summary, target}], oldest first. */
  update(callId, entries) {
    entries = Array.isArray(entries) ? entries : [];
    const last = entries.length ? entries[entries.length - 1] : null;
    const key = `${callId}|${entries.length}|${last ? last.at : ''}`;
    if (key === this.key) return;
    this.key = key;
    if (entries.length === 0) {
      this.container.replaceChildren(h('p', { class: 'placeholder' }, `no SIP messages for ${callId}`));
      this.key = key;
      return;
    }
    const t0 = Number(entries[0].at) || 0;
    const height = TOP + entries.length * ROW + 14;
    const peer = entries.find((e) => e.target)?.target || 'peer';
    const svg = s('svg', { class: 'ladder-svg', viewBox: `0 0 ${W} ${height}`, width: W, height,
                           role: 'img', 'aria-label': `SIP ladder of ${callId}: ${entries.length} messages` },
      s('defs', {},
        s('marker', { id: 'ladder-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8,
                      orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse' },
          s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'ladder-arrowhead' }))),
      s('text', { class: 'ladder-head', x: PEER_X, y: 14, 'text-anchor': 'middle' }, 'peer'),
      s('text', { class: 'ladder-head-sub', x: TIME_X, y: 29 }, peer),
      s('text', { class: 'ladder-head', x: VOX_X, y: 14, 'text-anchor': 'middle' }, 'voxlab'),
      s('text', { class: 'ladder-head-sub', x: W - 4, y: 29, 'text-anchor': 'end' }, 'times: s since the first'),
      s('line', { class: 'ladder-life', x1: PEER_X, y1: TOP - 8, x2: PEER_X, y2: height - 4 }),
      s('line', { class: 'ladder-life', x1: VOX_X, y1: TOP - 8, x2: VOX_X, y2: height - 4 }));

    entries.forEach((e, i) => {
      const y = TOP + i * ROW + 18;
      const inbound = e.direction === 'in';
      const [x1, x2] = inbound ? [PEER_X, VOX_X - 1] : [VOX_X, PEER_X + 1];
      const rel = (Number(e.at) - t0).toFixed(3);
      const summary = String(e.summary ?? '');
      const g = s('g', { class: `ladder-msg ${msgClass(summary)}`, 'data-direction': inbound ? 'in' : 'out' },
        s('title', {}, `${fmtClock(e.at)} ${inbound ? 'from' : 'to'} ${e.target || '?'}\n${summary}`),
        s('text', { class: 'ladder-time', x: TIME_X, y: y + 4 }, `+${rel}`),
        s('line', { class: 'ladder-arrow', x1, y1: y, x2, y2: y, 'marker-end': 'url(#ladder-arrow)' }),
        s('text', { class: 'ladder-label', x: (PEER_X + VOX_X) / 2, y: y - 5, 'text-anchor': 'middle' },
          ellipsize(summary, 58)));
      svg.append(g);
    });
    const wrap = this.container;
    const stick = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 24;
    wrap.replaceChildren(svg);
    if (stick) wrap.scrollTop = wrap.scrollHeight;
  }
}

/** Requests in one colour, responses by their class (1xx, 2xx, 3xx-6xx). */
function msgClass(summary) {
  const m = /^(?:SIP\/2\.0\s+)?([1-6])\d\d\b/.exec(summary);
  if (!m) return 'ladder-req';
  return m[1] === '1' ? 'ladder-1xx' : m[1] === '2' ? 'ladder-2xx' : 'ladder-err';
}

function ellipsize(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '\u2026' : text;
}
