// dom.js: tiny helpers shared by the views: element builders, formatting, level meters.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h('div', {class: 'x', onclick: fn}, 'text', child...) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function $(id) {
  return document.getElementById(id);
}

/** Set text only when it changed (keeps the DOM quiet under the 500 ms poll). */
export function setText(el, text) {
  const t = String(text ?? '');
  if (el.textContent !== t) el.textContent = t;
}

/** 75 -> "0:01:15" */
export function fmtDuration(seconds) {
  const n = Math.max(0, Math.floor(Number(seconds) || 0));
  const hh = Math.floor(n / 3600);
  const mm = String(Math.floor(n / 60) % 60).padStart(2, '0');
  const ss = String(n % 60).padStart(2, '0');
  return `${hh}:${mm}:${ss}`;
}

/** 75 -> "01:15" (the phone's timer) */
export function fmtMinSec(seconds) {
  const n = Math.max(0, Math.floor(Number(seconds) || 0));
  return `${String(Math.floor(n / 60)).padStart(2, '0')}:${String(n % 60).padStart(2, '0')}`;
}

/** epoch seconds -> "10:51:26" local time */
export function fmtClock(epoch) {
  if (epoch === null || epoch === undefined) return '';
  const d = new Date(Number(epoch) * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

/** epoch seconds -> "2026-01-01 10:51:26" local time */
export function fmtDateTime(epoch) {
  if (epoch === null || epoch === undefined) return '';
  const d = new Date(Number(epoch) * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtBytes(n) {
  n = Number(n) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** RMS dBFS (-100 is silence) -> 0..1 on a -60..0 dB scale. */
export function dbToFraction(db) {
  if (db === null || db === undefined || db === '') return 0;
  const v = Number(db);
  if (!Number.isFinite(v)) return 0;
  return Math.min(1, Math.max(0, (v + 60) / 60));
}

/** A <meter> for an audio level, 0..1. */
export function makeMeter(label, attrs = {}) {
  return h('meter', { class: 'level', min: 0, max: 1, low: 0.85, high: 0.95, optimum: 0.4, value: 0,
                      title: label, 'aria-label': label, ...attrs });
}

/** Show a dBFS level on a meter made by makeMeter(). */
export function setMeterDb(el, db) {
  const f = dbToFraction(db);
  if (Math.abs(el.value - f) > 0.005) el.value = f;
  const label = el.getAttribute('aria-label') || '';
  const known = db !== null && db !== undefined && Number.isFinite(Number(db));
  const t = known ? `${label}: ${Math.round(Number(db))} dBFS` : `${label}: no level`;
  el.dataset.db = known ? String(Math.round(Number(db))) : '';
  if (el.title !== t) el.title = t;
}

/** Wrap an async handler so that a failure is logged instead of left unhandled. */
export function safe(fn) {
  return (...args) => Promise.resolve().then(() => fn(...args)).catch((err) => console.error('voxlab:', err));
}

/** True when a scrollable element is scrolled (nearly) to the bottom. */
export function atBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
}
