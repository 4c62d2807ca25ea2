// graph.js: draws a session's media graph in an <svg>: a node per media unit (kind, name,
// in/out level bars) and an arrow per route. The drawing is rebuilt only when the set of
// units or routes changes; levels are updated in place on every refresh.

import { s, setText, dbToFraction } from './dom.js';

const NODE_W = 150;
const NODE_H = 46;
const BAR_W = NODE_W - 40;
const COL_GAP = 90;      // between the two columns' boxes
const ROW_H = 70;        // between rows' centres
const SIDE = 70;         // room beside the columns for loops and same-column curves
const CALL_KINDS = new Set(['rtp', 'link']);   // a call's unit: SIP/RTP, or a link between sessions

export class MediaGraph {
  constructor(svg) {
    this.svg = svg;
    this.key = null;
    this.nodes = new Map();   // unit name -> {g, inBar, outBar, title}
    this.clear();
  }

  clear() {
    this.key = null;
    this.nodes.clear();
    this.svg.replaceChildren(s('text', { x: 150, y: 30, class: 'graph-empty', 'text-anchor': 'middle' }, 'no media units'));
    this.svg.setAttribute('viewBox', '0 0 300 50');
    this.svg.setAttribute('width', 300);
    this.svg.setAttribute('height', 50);
  }

  /** units: [{id, kind, name, description, levels: {in, out}}]; routes: [[src, dst], ...] */
  update(units, routes) {
    units = Array.isArray(units) ? units : [];
    routes = Array.isArray(routes) ? routes.filter((r) => Array.isArray(r) && r.length >= 2) : [];
    const byName = new Map(units.map((u) => [u.name, u]));
    // Route ends that are not among the units (a unit of another session) get a node too.
    for (const [a, b] of routes) {
      for (const n of [a, b]) if (!byName.has(n)) byName.set(n, { name: n, kind: 'external', description: n });
    }
    const list = [...byName.values()];
    const key = JSON.stringify([list.map((u) => [u.name, u.kind]), routes.map((r) => [r[0], r[1]])]);
    if (key !== this.key) {
      if (list.length === 0) this.clear();
      else this._draw(list, routes);
      this.key = key;
    }
    for (const u of list) {
      const node = this.nodes.get(u.name);
      if (!node) continue;
      const lv = u.levels || null;
      setBar(node.inBar, lv ? lv.in : null);
      setBar(node.outBar, lv ? lv.out : null);
      setText(node.title, `${u.kind} ${u.name}${u.description && u.description !== u.name ? '\n' + u.description : ''}` +
        (lv ? `\nlevel in ${Math.round(lv.in)} dBFS, out ${Math.round(lv.out)} dBFS` : ''));
    }
  }

  _draw(units, routes) {
    this.nodes.clear();
    this.svg.replaceChildren();
    const at = layout(units);

    const defs = s('defs', {},
      s('marker', { id: 'graph-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8,
                    orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse' },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'graph-arrowhead' })));
    const edges = s('g', { class: 'graph-edges' });
    const nodes = s('g', { class: 'graph-nodes' });

    const pairs = new Set(routes.map(([a, b]) => `${a}\u0000${b}`));
    for (const [a, b] of routes) {
      const pa = at.get(a);
      const pb = at.get(b);
      const reverse = a !== b && pairs.has(`${b}\u0000${a}`);
      let d;
      if (a === b) {
        // A self-loop (an echo call), on the outer side of the node's column.
        const dir = pa.side;
        const x = pa.x + dir * NODE_W / 2;
        d = `M${x},${pa.y - 10} C${x + dir * 56},${pa.y - 44} ${x + dir * 56},${pa.y + 44} ${x + dir * 2},${pa.y + 12}`;
      } else if (pa.col === pb.col) {
        // Two nodes of one column: a curve on the column's outer side, around the nodes between.
        const dir = pa.side;
        const x = pa.x + dir * NODE_W / 2;
        const bulge = 26 + 6 * Math.abs(pb.row - pa.row) + (reverse && a > b ? 14 : 0);
        const down = pb.y > pa.y;
        const y1 = pa.y + (down ? 6 : -6);
        const y2 = pb.y + (down ? -6 : 6);
        d = `M${x},${y1} C${x + dir * bulge},${y1} ${x + dir * bulge},${y2} ${x + dir * 2},${y2}`;
      } else {
        // Two routes between the same pair (both directions) are drawn side by side.
        const [p, q] = clipped(pa, pb, reverse ? 6 : 0);
        d = `M${p.x.toFixed(1)},${p.y.toFixed(1)} L${q.x.toFixed(1)},${q.y.toFixed(1)}`;
      }
      edges.append(s('path', { d, class: 'graph-edge', 'data-edge': `${a}->${b}`, 'marker-end': 'url(#graph-arrow)' },
        s('title', {}, `${a} \u2192 ${b}`)));
    }

    for (const u of units) {
      const p = at.get(u.name);
      const title = s('title', {}, u.name);
      const inBar = s('rect', { class: 'graph-bar graph-bar-in', x: 30, y: 31, width: 0, height: 4 });
      const outBar = s('rect', { class: 'graph-bar graph-bar-out', x: 30, y: 38, width: 0, height: 4 });
      const g = s('g', { class: `graph-node kind-${cssName(u.kind)}`, 'data-unit': u.name,
                         transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})` },
        title,
        s('rect', { class: 'graph-box', width: NODE_W, height: NODE_H, rx: 6, ry: 6 }),
        s('text', { class: 'graph-kind', x: 7, y: 12 }, String(u.kind || 'unit')),
        s('text', { class: 'graph-name', x: 7, y: 26 }, ellipsize(u.name, 20)),
        s('text', { class: 'graph-bar-label', x: 7, y: 35 }, 'in'),
        s('rect', { class: 'graph-bar-bg', x: 30, y: 31, width: BAR_W, height: 4 }),
        inBar,
        s('text', { class: 'graph-bar-label', x: 7, y: 42 }, 'out'),
        s('rect', { class: 'graph-bar-bg', x: 30, y: 38, width: BAR_W, height: 4 }),
        outBar);
      nodes.append(g);
      this.nodes.set(u.name, { g, inBar, outBar, title });
    }
    this.svg.append(defs, edges, nodes);

    // Fit the drawing, at its natural size (CSS only scales it down).
    const pos = [...at.values()];
    const minX = Math.min(...pos.map((p) => p.x)) - NODE_W / 2 - SIDE;
    const maxX = Math.max(...pos.map((p) => p.x)) + NODE_W / 2 + SIDE;
    const minY = Math.min(...pos.map((p) => p.y)) - NODE_H / 2 - 12;
    const maxY = Math.max(...pos.map((p) => p.y)) + NODE_H / 2 + 12;
    const w = Math.round(maxX - minX);
    const ht = Math.round(maxY - minY);
    this.svg.setAttribute('viewBox', `${Math.round(minX)} ${Math.round(minY)} ${w} ${ht}`);
    this.svg.setAttribute('width', w);
    this.svg.setAttribute('height', ht);
  }
}

/**
 * Deterministic positions: calls (rtp and link units) in the left column, the other units in the
 * right one (or the list split in two when all are of one sort), each in the units' order.
 * name -> {x, y, col, row, side} (side: -1 for the left column, +1 for the right one).
 */
function layout(units) {
  let left = units.filter((u) => CALL_KINDS.has(u.kind));
  let right = units.filter((u) => !CALL_KINDS.has(u.kind));
  if (left.length === 0 || right.length === 0) {
    const half = Math.ceil(units.length / 2);
    left = units.slice(0, half);
    right = units.slice(half);
  }
  const out = new Map();
  const place = (list, col) => list.forEach((u, row) => {
    out.set(u.name, {
      x: col * (NODE_W + COL_GAP),
      y: (row - (list.length - 1) / 2) * ROW_H,
      col,
      row,
      side: right.length === 0 || col === 1 ? 1 : -1,
    });
  });
  place(left, 0);
  place(right, 1);
  return out;
}

/** The segment between two node centres, cut at the boxes' borders, shifted sideways by `offset`. */
function clipped(a, b, offset) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const ox = (-dy / len) * offset;
  const oy = (dx / len) * offset;
  // The fraction of the way along (dx, dy) at which a box's border (half sizes) is crossed.
  const tx = dx !== 0 ? (NODE_W / 2 + 3) / Math.abs(dx) : Infinity;
  const ty = dy !== 0 ? (NODE_H / 2 + 3) / Math.abs(dy) : Infinity;
  const t = Math.min(tx, ty, 0.45);
  return [
    { x: a.x + dx * t + ox, y: a.y + dy * t + oy },
    { x: b.x - dx * t + ox, y: b.y - dy * t + oy },
  ];
}

function setBar(rect, db) {
  const w = (BAR_W * dbToFraction(db)).toFixed(1);
  if (rect.getAttribute('width') !== w) rect.setAttribute('width', w);
}

function ellipsize(text, max) {
  text = String(text ?? '');
  return text.length > max ? text.slice(0, max - 1) + '\u2026' : text;
}

function cssName(kind) {
  return String(kind || 'unit').replace(/[^a-z0-9_-]/gi, '_');
}
