// console.js: the console pane's controller. Two console WebSockets: the "list" one polls
// `sessions` every 500 ms (sessions list, calls, graph), the "session" one is attached to
// the selected session and carries the REPL, the feed and the ladder requests.

import { JsonSocket, wsUrl } from './ws.js';
import { $, setText, fmtDuration, safe } from './dom.js';
import { SessionList } from './sessionlist.js';
import { CallsTable, ENDED_STATES } from './callstable.js';
import { MediaGraph } from './graph.js';
import { Ladder } from './ladder.js';
import { EventLog } from './eventlog.js';
import { Repl } from './repl.js';
import { Actions } from './actions.js';

const POLL_MS = 500;
const LADDER_MS = 1000;

/** Does a feed entry's session id belong to the selected target (an id, an "sN" prefix, a call id)? */
function sameSession(target, sid) {
  if (!target || !sid) return false;
  return sid === target || sid.startsWith(target + '-') || target.startsWith(sid + '-');
}

export function startConsole({ onServerInfo, onRecordingStopped } = {}) {
  const listSock = new JsonSocket(wsUrl('/ws/console'));
  const sessSock = new JsonSocket(wsUrl('/ws/console'));

  const st = {
    selected: null,       // the selected session id (or, until attached, what the hash said)
    attached: null,       // the session id the session socket is attached to
    attachSeq: 0,
    attaching: false,
    pickedCall: null,     // the call the user clicked
    boundCall: null,      // the call `attach` bound to `call`
    live: [],
    ended: [],
    cache: new Map(),     // session id -> latest session object seen
    ladderDone: null,     // call id whose final ladder is drawn
    ladderBusy: false,
    polling: false,
    wasAttached: false,
  };

  const sessionList = new SessionList($('sessions'), (id) => select(id));
  const callsTable = new CallsTable($('calls'), (id) => pickCall(id));
  const graph = new MediaGraph($('graph'));
  const ladder = new Ladder($('ladder'));
  const events = new EventLog($('events'));
  const repl = new Repl(
    { input: $('repl-input'), output: $('repl-output'), choices: $('repl-choices'), status: $('repl-status') },
    {
      ready: () => {
        if (!st.selected) return 'no session selected: pick one in the Sessions list first';
        if (!sessSock.connected) return 'not connected to the console (reconnecting)';
        return null;
      },
      evaluate: (source) => sessSock.request('eval', { source }, { timeout: 0 }),
      complete: (source, cursor) => sessSock.request('complete', {
        source,
        // The server counts code points; JS strings count UTF-16 units.
        cursor: [...source.slice(0, cursor)].length,
      }, { timeout: 5000 }),
    });
  const actions = new Actions({
    hangup: $('act-hangup'), dtmfForm: $('act-dtmf-form'), dtmfDigits: $('act-dtmf-digits'), dtmf: $('act-dtmf'),
    playForm: $('act-play-form'), playUrl: $('act-play-url'), play: $('act-play'),
    recStart: $('act-record-start'), recStop: $('act-record-stop'), terminate: $('act-terminate'),
    target: $('act-target'), status: $('act-status'),
  }, {
    repl,
    hangup: (callId) => (sessSock.connected ? sessSock : listSock).request('hangup', { call: callId }),
    afterRecording: () => onRecordingStopped && onRecordingStopped(),
  });

  // ---- the list connection

  const connStatus = $('conn-status');
  const connRetry = $('conn-retry');
  listSock.onStatus(({ connected }) => {
    setText(connStatus, connected ? 'connected' : 'disconnected');
    connStatus.className = connected ? 'ok' : 'bad';
    setText(connRetry, listSock.retryText());
    if (connected) {
      listSock.request('hello', { client: 'web' }).then((r) => {
        if (r.ok && onServerInfo) onServerInfo(r);
      }).catch(() => {});
      poll();
    } else {
      setText($('sessions-status'), 'not connected to the console');
    }
  });

  setInterval(() => setText(connRetry, listSock.retryText()), 1000);

  function poll() {
    if (!listSock.connected || st.polling) return;
    st.polling = true;
    listSock.request('sessions', { detail: true, ended_limit: 10 }, { timeout: 5000 })
      .then((r) => {
        if (!r.ok) {
          setText($('sessions-status'), `sessions: ${r.error}`);
          return;
        }
        setText($('sessions-status'), '');
        st.live = Array.isArray(r.sessions) ? r.sessions : [];
        st.ended = Array.isArray(r.ended) ? r.ended : [];
        for (const sess of [...st.ended, ...st.live]) remember(sess);
        // Forget sessions that left both lists (but keep the selected one).
        const listed = new Set([...st.live, ...st.ended].map((x) => x.id));
        for (const id of st.cache.keys()) {
          if (!listed.has(id) && !sameSession(st.selected, id)) st.cache.delete(id);
        }
        renderErrors(r.scenario_errors || {});
        renderAll();
      })
      .catch(() => {})
      .finally(() => { st.polling = false; });
  }
  setInterval(poll, POLL_MS);

  function remember(sess) {
    if (!sess || !sess.id) return;
    const old = st.cache.get(sess.id);
    st.cache.set(sess.id, old ? { ...old, ...sess } : sess);
  }

  function renderErrors(errors) {
    const el = $('scenario-errors');
    const entries = Object.entries(errors);
    const text = entries.map(([file, msg]) => `${file}: ${msg}`).join('\n');
    setText(el, text);
    el.hidden = entries.length === 0;
  }

  // ---- the session connection

  sessSock.onStatus(({ connected }) => {
    if (connected) {
      sessSock.request('hello', { client: 'web' }).catch(() => {});
      if (st.selected) {
        if (st.wasAttached) events.clear();
        safe(attach)(st.selected);
      }
    } else {
      if (st.attached) {
        events.note('console connection lost; reconnecting\u2026', 'error');
        st.wasAttached = true;
      }
      st.attached = null;
      if (st.selected) setAttach('disconnected, reconnecting\u2026', true);
    }
  });

  sessSock.onEvent('feed', (ev) => {
    const entry = ev.entry || {};
    if (sameSession(st.selected, entry.session)) events.add(entry, !!ev.history);
  });
  sessSock.onEvent('session_ended', (ev) => {
    if (!sameSession(st.selected, ev.session)) return;
    if (ev.summary) remember(ev.summary);
    events.note(`session ${ev.session} has ended (${ev.reason ?? '?'})`, 'session');
    repl.note(`*** session ${ev.session} has ended (${ev.reason ?? '?'}); its namespace can still be inspected`, 'repl-note repl-ended');
    renderSelected();
  });
  sessSock.onEvent('output', (ev) => { if (sameSession(st.selected, ev.session)) repl.onOutput(ev); });
  sessSock.onEvent('deferred', (ev) => { if (sameSession(st.selected, ev.session)) repl.onDeferred(ev); });

  async function attach(target) {
    const seq = ++st.attachSeq;
    st.attached = null;
    if (!sessSock.connected) {
      setAttach('waiting for the console connection\u2026');
      return;   // the session socket's onStatus attaches when it opens
    }
    setAttach('attaching\u2026');
    st.attaching = true;
    let r;
    try {
      r = await sessSock.request('attach', { target, watch: true, history: 200 });
    } catch (err) {
      if (seq === st.attachSeq) setAttach(`attach failed: ${err.message}`, true);
      return;
    } finally {
      if (seq === st.attachSeq) st.attaching = false;
    }
    if (seq !== st.attachSeq) return;
    if (!r.ok) {
      setAttach(`attach failed: ${r.error}`, true);
      repl.note(`attach failed: ${r.error}`, 'repl-note repl-ended');
      return;
    }
    const info = r.session || {};
    st.attached = info.id || target;
    st.wasAttached = false;
    if (st.selected !== st.attached) {
      st.selected = st.attached;
      setHash(st.selected);
    }
    st.boundCall = r.call || null;
    remember(info);
    if (r.banner) repl.note(r.banner, 'repl-note repl-banner');
    setAttach(info.ended ? 'attached (ended)' : 'attached');
    renderAll();
    safe(refreshLadder)();
  }

  function setAttach(text, bad = false) {
    const el = $('sv-attach');
    setText(el, text);
    el.classList.toggle('bad', bad);
  }

  // ---- selection

  function select(id) {
    if (!id) return;
    // Picking the selected session again does nothing, unless its attach failed.
    if (id === st.selected && (st.attached || st.attaching || !sessSock.connected)) return;
    st.selected = id;
    st.pickedCall = null;
    st.boundCall = null;
    st.ladderDone = null;
    st.wasAttached = false;
    events.clear();
    repl.clear();
    callsTable.clear();
    graph.clear();
    ladder.reset('no call selected');
    setHash(id);
    renderAll();
    safe(attach)(id);
  }

  function pickCall(id) {
    st.pickedCall = id;
    st.ladderDone = null;
    renderSelected();
    safe(refreshLadder)();
  }

  function setHash(id) {
    const want = id ? `#session=${encodeURIComponent(id)}` : '';
    if (location.hash !== want) history.replaceState(null, '', want || location.pathname + location.search);
  }

  function hashSession() {
    const m = /^#session=(.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }
  window.addEventListener('hashchange', () => {
    const id = hashSession();
    if (id && id !== st.selected) select(id);
  });

  // ---- rendering

  function findSelected() {
    if (!st.selected) return null;
    if (st.cache.has(st.selected)) return st.cache.get(st.selected);
    for (const [id, sess] of st.cache) if (sameSession(st.selected, id)) return sess;
    return null;
  }

  function effectiveCall(sess) {
    const calls = sess && Array.isArray(sess.calls) ? sess.calls : [];
    return calls.find((c) => c.id === st.pickedCall)
      || calls.find((c) => c.id === st.boundCall && !ENDED_STATES.has(c.state))
      || calls.find((c) => !ENDED_STATES.has(c.state))
      || calls.find((c) => c.id === st.boundCall)
      || calls[calls.length - 1]
      || null;
  }

  function renderAll() {
    sessionList.render(st.live, st.ended, findSelected()?.id || st.selected);
    renderSelected();
  }

  function renderSelected() {
    const empty = $('sv-empty');
    const body = $('sv-body');
    if (!st.selected) {
      empty.hidden = false;
      body.hidden = true;
      actions.update({ session: null, call: null });
      return;
    }
    empty.hidden = true;
    body.hidden = false;
    const sess = findSelected();
    setText($('sv-title'), sess ? sess.id : st.selected);
    if (!sess) {
      setText($('sv-meta'), 'not in the sessions list');
      actions.update({ session: null, call: null });
      return;
    }
    const isEnded = !!sess.ended || sess.state === 'terminated';
    const calls = Array.isArray(sess.calls) ? sess.calls : [];
    setText($('sv-meta'), [sess.scenario, isEnded ? `ended${sess.end_reason ? ' (' + sess.end_reason + ')' : ''}` : sess.state,
      `${isEnded ? 'lasted' : 'up'} ${fmtDuration(sess.age)}`, `${calls.length} call${calls.length === 1 ? '' : 's'}`].join(' \u00b7 '));
    $('session-view').classList.toggle('ended', isEnded);
    const call = effectiveCall(sess);
    callsTable.render(calls, call ? call.id : null);
    if (Array.isArray(sess.units) || Array.isArray(sess.routes)) graph.update(sess.units || [], sess.routes || []);
    actions.update({ session: sess, call });
    setText($('ladder-call'), call ? call.id : '');
    if (!call) ladder.reset('no call in this session');
  }

  // ---- the SIP ladder of the selected call, refreshed every second while it is live

  async function refreshLadder() {
    const sess = findSelected();
    const call = effectiveCall(sess);
    if (!call || st.ladderBusy) return;
    const live = !ENDED_STATES.has(call.state);
    if (!live && st.ladderDone === call.id) return;
    const sock = sessSock.connected ? sessSock : listSock;
    if (!sock.connected) return;
    st.ladderBusy = true;
    try {
      const r = await sock.request('ladder', { call: call.id }, { timeout: 5000 });
      const now = effectiveCall(findSelected());
      if (!now || now.id !== call.id) return;
      if (r.ok) {
        ladder.update(call.id, r.entries);
        if (!live) st.ladderDone = call.id;
      } else {
        ladder.reset(`ladder of ${call.id}: ${r.error}`);
        if (!live) st.ladderDone = call.id;
      }
    } catch {
      /* the next tick tries again */
    } finally {
      st.ladderBusy = false;
    }
  }
  setInterval(safe(refreshLadder), LADDER_MS);

  // ---- start

  const fromHash = hashSession();
  listSock.start();
  sessSock.start();
  if (fromHash) select(fromHash);
  renderAll();

  return { listSock, sessSock, select };
}
