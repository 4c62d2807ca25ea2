// softphone.js: the browser softphone panel. Logs in over /ws/phone, places and answers
// calls with WebRTC (always the offerer, non-trickle ICE), sends DTMF, mute and hold, shows
// the call state, a timer, mic/speaker meters, and rings for incoming calls.

import { JsonSocket, wsUrl } from './ws.js';
import { $, h, setText, fmtMinSec, fmtClock, safe } from './dom.js';
import { audioContext, StreamMeter, Ringer, keyTone } from './audio.js';
import { openMic, createPeer, completeOffer } from './rtc.js';

const STATES = new Set(['idle', 'calling', 'ringing', 'incoming', 'connected', 'held', 'ended']);
const IN_CALL = new Set(['connected', 'held']);
const ENDED_SHOWN_MS = 2000;   // "ended" stays on screen this long, then "idle"
const DIGIT = /^[0-9*#]$/;

export function startSoftphone() {
  const sock = new JsonSocket(wsUrl('/ws/phone'), { requestTimeout: 15000 });
  const el = {
    pane: $('phone-pane'), loginForm: $('sp-login-form'), user: $('sp-user'), password: $('sp-password'),
    login: $('sp-login'), logout: $('sp-logout'), status: $('sp-status'), conn: $('sp-conn'),
    dialForm: $('sp-dial-form'), dest: $('sp-dest'), call: $('sp-call'), answer: $('sp-answer'),
    reject: $('sp-reject'), hangup: $('sp-hangup'), mute: $('sp-mute'), hold: $('sp-hold'),
    state: $('sp-state'), timer: $('sp-timer'), codec: $('sp-codec'), peer: $('sp-peer'),
    incoming: $('sp-incoming'), incomingFrom: $('sp-incoming-from'),
    micMeter: $('sp-mic-meter'), spkMeter: $('sp-speaker-meter'), remote: $('sp-remote'), log: $('sp-log'),
  };

  // A live object for tests and the devtools console.
  const phone = { pc: null, localStream: null, remoteStream: null, state: 'idle' };
  window.voxlabPhone = phone;

  const st = {
    state: 'idle',
    registered: false,
    user: null,
    creds: null,          // {user, password} while logged in (memory only), to log in again after a reconnect
    call: null,           // {kind: 'out'|'in', pc, localStream, remoteStream, closed, offered, answering}
    muted: false,
    connectedAt: null,
    timer: null,
    endedTimer: null,
  };
  const micMeter = new StreamMeter(el.micMeter);
  const spkMeter = new StreamMeter(el.spkMeter);
  const ringer = new Ringer();

  // ---- display

  function log(text, bad = false) {
    const line = h('div', { class: bad ? 'sp-log-line bad' : 'sp-log-line' },
      h('span', { class: 'ev-time' }, fmtClock(Date.now() / 1000)), ' ', text);
    const stick = el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 24;
    el.log.append(line);
    while (el.log.childElementCount > 200) el.log.firstElementChild.remove();
    if (stick) el.log.scrollTop = el.log.scrollHeight;
  }

  function status(text, bad = false) {
    setText(el.status, text);
    el.status.classList.toggle('bad', bad);
    el.status.classList.toggle('ok', !bad && st.registered);
  }

  function setState(s) {
    if (!STATES.has(s)) return;
    clearTimeout(st.endedTimer);
    st.endedTimer = null;
    st.state = s;
    phone.state = s;
    setText(el.state, s);
    el.state.dataset.state = s;
    if (IN_CALL.has(s) && st.connectedAt === null) startTimer();
    if (s === 'ended') stopTimer();
    if (s === 'incoming') {
      el.incoming.hidden = false;
      if (!(st.call && st.call.answering)) ringer.start();
    } else {
      el.incoming.hidden = true;
      ringer.stop();
    }
    updateButtons();
  }

  function updateButtons() {
    const s = st.state;
    const c = st.call;
    const idle = s === 'idle' || s === 'ended';
    const answering = !!(c && c.answering);
    el.call.disabled = !idle;
    el.answer.disabled = !(s === 'incoming' && !answering);
    el.reject.disabled = !(s === 'incoming' && !answering);
    el.hangup.disabled = !(s === 'calling' || s === 'ringing' || IN_CALL.has(s) || (s === 'incoming' && answering));
    el.mute.disabled = el.hold.disabled = !IN_CALL.has(s);
    el.mute.setAttribute('aria-pressed', String(st.muted));
    setText(el.mute, st.muted ? 'Unmute' : 'Mute');
    const held = s === 'held';
    el.hold.setAttribute('aria-pressed', String(held));
    setText(el.hold, held ? 'Resume' : 'Hold');
    el.logout.disabled = !(st.registered || st.creds);
    el.pane.classList.toggle('in-call', IN_CALL.has(s));
  }

  function startTimer() {
    st.connectedAt = Date.now();
    clearInterval(st.timer);
    st.timer = setInterval(tick, 250);
    tick();
  }
  function tick() {
    if (st.connectedAt !== null) setText(el.timer, fmtMinSec((Date.now() - st.connectedAt) / 1000));
  }
  function stopTimer() {
    clearInterval(st.timer);
    st.timer = null;
    tick();
  }
  function resetTimer() {
    clearInterval(st.timer);
    st.timer = null;
    st.connectedAt = null;
    setText(el.timer, '00:00');
  }

  // ---- call life

  function newCall(kind) {
    if (st.call) closeCall(st.call);
    const c = { kind, pc: null, localStream: null, remoteStream: null, closed: false, offered: false, answering: false };
    st.call = c;
    st.muted = false;
    resetTimer();
    setText(el.codec, '');
    setText(el.peer, '');
    return c;
  }

  function ensureCall(kind) {
    if (!st.call) newCall(kind);
    return st.call;
  }

  async function prepareMedia(c) {
    audioContext();
    const stream = await openMic(log);
    if (c.closed) {
      if (stream) stream.getTracks().forEach((t) => t.stop());
      throw new Error('cancelled');
    }
    c.localStream = stream;
    c.pc = createPeer(stream, {
      onTrack: (remote) => onRemote(c, remote),
      onStateChange: (s) => { if (!c.closed) log(`media ${s}`, s === 'failed'); },
    });
    phone.pc = c.pc;
    phone.localStream = stream;
    if (stream) micMeter.attach(stream);
  }

  function onRemote(c, stream) {
    if (c.closed) return;
    c.remoteStream = stream;
    phone.remoteStream = stream;
    // Chromium only lets Web Audio see a remote stream that plays in a media element.
    if (el.remote.srcObject !== stream) el.remote.srcObject = stream;
    el.remote.play().catch((err) => log(`cannot play the remote audio: ${err.message}`, true));
    spkMeter.attach(stream);
  }

  function closeCall(c) {
    c.closed = true;
    try { c.pc && c.pc.close(); } catch { /* closed */ }
    if (c.localStream) c.localStream.getTracks().forEach((t) => t.stop());
    micMeter.detach();
    spkMeter.detach();
    el.remote.srcObject = null;
    phone.pc = null;
    phone.localStream = null;
    phone.remoteStream = null;
  }

  /** The call is over (server "ended", a failure, our own hang-up): clean up, show "ended", then "idle". */
  function endCall(reason) {
    const c = st.call;
    st.call = null;
    if (c) closeCall(c);
    st.muted = false;
    if (!c && (st.state === 'idle' || st.state === 'ended')) return;
    if (reason) log(`call ended: ${reason}`);
    setText(el.peer, reason ? `ended: ${reason}` : 'ended');
    setState('ended');
    st.endedTimer = setTimeout(() => { if (st.state === 'ended') setState('idle'); }, ENDED_SHOWN_MS);
  }

  async function placeCall() {
    if (!(st.state === 'idle' || st.state === 'ended')) return;
    const to = el.dest.value.trim();
    if (!to) {
      log('type a destination first (e.g. echo)', true);
      el.dest.focus();
      return;
    }
    const c = newCall('out');
    setText(el.peer, `to ${to}`);
    setState('calling');
    try {
      await prepareMedia(c);
      const sdp = await completeOffer(c.pc);
      if (c.closed) return;
      c.offered = true;
      const r = await sock.request('call', { to, sdp }, { timeout: 0 });
      if (c.closed) {
        // Hung up while the server was still setting the call up: make sure it ends there too.
        if (r.ok) sock.request('hangup').catch(() => {});
        return;
      }
      if (!r.ok) throw new Error(r.error || 'the call failed');
      await c.pc.setRemoteDescription({ type: 'answer', sdp: r.sdp });
    } catch (err) {
      if (!c.closed && err.message !== 'cancelled') log(`call to ${to} failed: ${err.message}`, true);
      if (st.call === c) endCall(err.message);
    }
  }

  async function answer() {
    const c = st.call;
    if (!c || st.state !== 'incoming' || c.answering) return;
    c.answering = true;
    ringer.stop();
    updateButtons();
    try {
      await prepareMedia(c);
      const sdp = await completeOffer(c.pc);
      if (c.closed) return;
      c.offered = true;
      const r = await sock.request('answer', { sdp }, { timeout: 0 });
      if (c.closed) return;
      if (!r.ok) throw new Error(r.error || 'answer failed');
      await c.pc.setRemoteDescription({ type: 'answer', sdp: r.sdp });
    } catch (err) {
      if (c.closed || err.message === 'cancelled') return;
      log(`answer failed: ${err.message}`, true);
      if (st.call === c) {
        if (!c.offered) sock.request('reject').catch(() => {});
        endCall(err.message);
      }
    }
  }

  async function reject() {
    const c = st.call;
    if (!c || st.state !== 'incoming') return;
    try {
      const r = await sock.request('reject');
      if (!r.ok) log(`reject: ${r.error}`, true);
    } catch (err) {
      log(`reject: ${err.message}`, true);
    }
    if (st.call === c) endCall('rejected');
  }

  async function hangup() {
    const c = st.call;
    if (!c) return;
    if (c.kind === 'out' && !c.offered) {
      endCall('cancelled');   // the offer was not sent yet: nothing to tell the server
      return;
    }
    try {
      const r = await sock.request('hangup');
      if (!r.ok) log(`hang up: ${r.error}`, true);
    } catch (err) {
      log(`hang up: ${err.message}`, true);
    }
    if (st.call === c) endCall('hung up');
  }

  async function toggleMute() {
    if (!IN_CALL.has(st.state) || !st.call) return;
    const on = !st.muted;
    st.muted = on;
    for (const t of st.call.localStream ? st.call.localStream.getAudioTracks() : []) t.enabled = !on;
    updateButtons();
    try {
      const r = await sock.request('mute', { on });
      if (!r.ok) log(`mute: ${r.error}`, true);
    } catch (err) {
      log(`mute: ${err.message}`, true);
    }
  }

  async function toggleHold() {
    if (!IN_CALL.has(st.state)) return;
    const on = st.state !== 'held';
    el.hold.disabled = true;
    try {
      // The re-INVITE's outcome comes as a "held" / "connected" state event.
      const r = await sock.request('hold', { on });
      if (!r.ok) log(`${on ? 'hold' : 'resume'}: ${r.error}`, true);
    } catch (err) {
      log(`${on ? 'hold' : 'resume'}: ${err.message}`, true);
    } finally {
      updateButtons();
    }
  }

  function pressDigit(d) {
    flashKey(d);
    keyTone(d);
    if (IN_CALL.has(st.state)) {
      sock.request('dtmf', { digits: d })
        .then((r) => { if (!r.ok) log(`DTMF ${d}: ${r.error}`, true); })
        .catch((err) => log(`DTMF ${d}: ${err.message}`, true));
    } else if (st.state === 'idle' || st.state === 'ended') {
      el.dest.value += d;
    }
  }

  function flashKey(d) {
    const b = el.pane.querySelector(`button[data-digit="${CSS.escape(d)}"]`);
    if (!b) return;
    b.classList.add('pressed');
    setTimeout(() => b.classList.remove('pressed'), 140);
  }

  // ---- login

  async function login(user, password, quiet = false) {
    audioContext();
    status(`registering ${user}\u2026`);
    el.login.disabled = true;
    try {
      if (!quiet && (st.registered || st.creds)) {
        // One user per tab: leave the old registration first.
        st.creds = null;
        st.registered = false;
        await sock.request('logout').catch(() => {});
      }
      const r = await sock.request('login', { user, password }, { timeout: 15000 });
      if (r.ok) {
        st.registered = true;
        st.user = r.user || user;
        st.creds = { user, password };
        status(`registered as ${st.user}`);
        log(`registered as ${st.user}${r.contact ? ' (contact ' + r.contact + ')' : ''}`);
      } else {
        st.registered = false;
        st.creds = null;
        status(r.error || 'login failed', true);
      }
    } catch (err) {
      st.registered = false;
      status(`login failed: ${err.message}`, true);
    } finally {
      el.login.disabled = false;
      updateButtons();
    }
  }

  async function logout() {
    st.creds = null;
    if (st.call) await hangup();
    try {
      const r = await sock.request('logout');
      if (!r.ok) log(`logout: ${r.error}`, true);
    } catch (err) {
      log(`logout: ${err.message}`, true);
    }
    st.registered = false;
    status('not registered');
    updateButtons();
  }

  // ---- server events

  sock.onEvent('registered', (ev) => {
    st.registered = true;
    st.user = ev.user || st.user;
    status(`registered as ${st.user}`);
    updateButtons();
  });
  sock.onEvent('unregistered', (ev) => {
    st.registered = false;
    status(`not registered${ev.reason ? ': ' + ev.reason : ''}`, true);
    updateButtons();
  });
  sock.onEvent('incoming', (ev) => {
    const who = ev.display ? `${ev.display} <${ev.from}>` : String(ev.from ?? 'unknown');
    if (st.call && !(st.state === 'idle' || st.state === 'ended')) {
      log(`incoming call from ${who} while busy`);
      return;
    }
    audioContext();
    newCall('in');
    setText(el.incomingFrom, who);
    setText(el.peer, `from ${who}`);
    log(`incoming call from ${who}`);
    setState('incoming');
  });
  sock.onEvent('state', (ev) => {
    if (ev.codec) setText(el.codec, ev.codec);
    if (ev.text && ev.state !== 'ended') log(String(ev.text));
    switch (ev.state) {
      case 'incoming':
        if (st.state === 'incoming') break;   // the "incoming" event came first, as usual
        if (!st.call) newCall('in');
        setState('incoming');
        break;
      case 'calling':
        if (st.state === 'incoming') break;
        ensureCall('out');
        setState('calling');
        break;
      case 'ringing':
        if (st.state === 'incoming') break;   // our own incoming call rings as "incoming"
        ensureCall('out');
        setState('ringing');
        break;
      case 'connected':
        ensureCall('out');
        setState('connected');
        break;
      case 'held':
        ensureCall('out');
        setState('held');
        break;
      case 'ended':
        endCall(ev.reason || '');
        break;
      default:
        log(`unknown call state ${ev.state}`);
    }
  });
  sock.onEvent('log', (ev) => log(`${ev.kind && ev.kind !== 'info' ? ev.kind + ': ' : ''}${ev.text ?? ''}`, ev.kind === 'error'));

  sock.onStatus(({ connected, error }) => {
    setText(el.conn, connected ? 'connected' : 'disconnected');
    el.conn.title = sock.retryText();
    el.conn.className = connected ? 'ok' : 'bad';
    if (connected) {
      if (st.creds) safe(login)(st.creds.user, st.creds.password, true);
      return;
    }
    const why = `the connection to the phone server was lost${error && / closed: /.test(error.message) ? ` (${error.message.split(': ').slice(1).join(': ')})` : ''}`;
    if (st.call) endCall(why);
    if (st.registered) {
      st.registered = false;
      status(`not registered: ${why}`, true);
    }
    updateButtons();
  });

  // ---- wiring

  el.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const user = el.user.value.trim();
    if (!user) {
      status('type a user name first', true);
      el.user.focus();
      return;
    }
    safe(login)(user, el.password.value);
  });
  el.logout.addEventListener('click', safe(logout));
  el.dialForm.addEventListener('submit', (ev) => { ev.preventDefault(); safe(placeCall)(); });
  el.answer.addEventListener('click', safe(answer));
  el.reject.addEventListener('click', safe(reject));
  el.hangup.addEventListener('click', safe(hangup));
  el.mute.addEventListener('click', safe(toggleMute));
  el.hold.addEventListener('click', safe(toggleHold));
  for (const b of el.pane.querySelectorAll('button[data-digit]')) {
    b.addEventListener('click', () => pressDigit(b.dataset.digit));
  }
  // Keys 0-9 * # anywhere in the panel: DTMF during a call, else they dial.
  el.pane.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !DIGIT.test(ev.key)) return;
    const t = ev.target;
    if (t === el.user || t === el.password) return;
    if (IN_CALL.has(st.state)) {
      ev.preventDefault();
      pressDigit(ev.key);
    } else if (t !== el.dest && (st.state === 'idle' || st.state === 'ended')) {
      ev.preventDefault();
      pressDigit(ev.key);
    }
  });
  // Browsers start audio only after a gesture: resume the context on the first one.
  for (const type of ['pointerdown', 'keydown']) {
    window.addEventListener(type, () => { if (st.state === 'incoming' || st.call) audioContext(); }, { capture: true });
  }

  status('not registered');
  setState('idle');
  sock.start();
  return { sock, phone };
}
