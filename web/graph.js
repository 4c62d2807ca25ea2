// graph.js: draws a session's media graph in an <svg>: a node per media unit (kind, name,
// in/out level bars) and an arrow per route. The layout is rebuilt only when the set of
// units or routes changes; levels are updated in place on every refresh.

import { s, setText, dbToFraction } from './dom.js';

const NODE_W = 176;
const NODE_H = 48;
const BAR_W = NODE_W - 44;

export class MediaGraph {
  constructor(svg) {
    this.svg = svg;
    this.key = null;
    this.nodes = new Map();   // unit name -> {g, inBar, outBar}
    this.clear();
  }

  clear() {
    this.key = null;
    this.nodes.clear();
    this.svg.replaceChildren();
    this.svg.setAttribute('viewBox', '0 0 400 60');
    this.svg.append(s('text', { x: 200, y: 34, class: 'graph-empty', 'text-anchor': 'middle' }, 'no media units'));
  }

  /** units: [{id, kind, name, description, levels:{in,out}}]; routes: [[src, dst], ...] */
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
    const pos = layout(units.length);
    const at = new Map(units.map((u, i) => [u.name, pos[i]]));

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
      let d;
      if (a === b) {
        // A self-loop (an echo call): out of the right side and back in.
        const x = pa.x + NODE_W / 2;
        d = `M${x},${pa.y - 10} C${x + 56},${pa.y - 46} ${x + 56},${pa.y + 46} ${x + 2},${pa.y + 12}`;
      } else {
        // Two routes between the same pair (both directions) are drawn side by side.
        const both = pairs.has(`${b}\u0000${a}`);
        const [p, q] = clipped(pa, pb, both ? 7 : 0);
        d = `M${p.x.toFixed(1)},${p.y.toFixed(1)} L${q.x.toFixed(1)},${q.y.toFixed(1)}`;
      }
      edges.append(s('path', { d, class: 'graph-edge', 'data-edge': `${a}->${b}`, 'marker-end': 'url(#graph-arrow)' },
        s('title', {}, `${a} \u2192 ${b}`)));
    }

    for (const u of units) {
      const p = at.get(u.name);
      const title = s('title', {}, u.name);
      const inBar = s('rect', { class: 'graph-bar graph-bar-in', x: 34, y: 30, width: 0, height: 4 });
      const outBar = s('rect', { class: 'graph-bar graph-bar-out', x: 34, y: 38, width: 0, height: 4 });
      const g = s('g', { class: `graph-node kind-${cssName(u.kind)}`, 'data-unit': u.name,
                         transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})` },
        title,
        s('rect', { class: 'graph-box', width: NODE_W, height: NODE_H, rx: 6, ry: 6 }),
        s('text', { class: 'graph-kind', x: 8, y: 14 }, String(u.kind || 'unit')),
        s('text', { class: 'graph-name', x: 8, y: 26 }, ellipsize(u.name, 24)),
        s('text', { class: 'graph-bar-label', x: 8, y: 34 }, 'in'),
        s('rect', { class: 'graph-bar-bg', x: 34, y: 30, width: BAR_W, height: 4 }),
        inBar,
        s('text', { class: 'graph-bar-label', x: 8, y: 42 }, 'out'),
        s('rect', { class: 'graph-bar-bg', x: 34, y: 38, width: BAR_W, height: 4 }),
        outBar);
      nodes.append(g);
      this.nodes.set(u.name, { g, inBar, outBar, title });
    }
    this.svg.append(defs, edges, nodes);

    // Fit the drawing (self-loops stick out on the right).
    const xs = pos.map((p) => p.x);
    const ys = pos.map((p) => p.y);
    const minX = Math.min(...xs) - NODE_W / 2 - 12;
    const maxX = Math.max(...xs) + NODE_W / 2 + 64;
    const minY = Math.min(...ys) - NODE_H / 2 - 16;
    const maxY = Math.max(...ys) + NODE_H / 2 + 16;
    this.svg.setAttribute('viewBox', `${minX.toFixed(0)} ${minY.toFixed(0)} ${(maxX - minX).toFixed(0)} ${(maxY - minY).toFixed(0)}`);
  }
}

/** Deterministic positions for n nodes: one centred, two side by side, more on a circle. */
function layout(n) {
  if (n === 1) return [{ x: 0, y: 0 }];
  if (n === 2) return [{ x: -130, y: 0 }, { x: 130, y: 0 }];
  const r = Math.max(120, 105 / Math.sin(Math.PI / n));
  const out = [];
  for (let i = 0; i < n; i++) {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    // An ellipse, wider than high: node boxes are wide.
    out.push({ x: Math.cos(a) * r * 1.35, y: Math.sin(a) * r * 0.8 });
  }
  return out;
}

/** The segment between two node centres, cut at the boxes' borders, shifted sideways by `offset`. */
function clipped(a, b, offset) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const nx = -dy / len;
  const ny = dx / len;
  const ox = nx * offset;
  const oy = ny * offset;
  const cut = (t) => {
    // Fraction of the way along (dx, dy) at which a box border (half sizes) is crossed.
    const tx = dx !== 0 ? (NODE_W / 2 + 3) / Math.abs(dx) : Infinity;
    const ty = dy !== 0 ? (NODE_H / 2 + 3) / Math.abs(dy) : Infinity;
    return Math.min(tx, ty, t);
  };
  const t = cut(0.45);
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
