// actions.js: the action buttons for the selected call and session: hang up, send DTMF,
// play a file, start/stop recording, terminate the session. Hang-up is the console's
// `hangup` op; the rest are evaluated in the session (shown in the REPL output).

import { setText, safe } from './dom.js';
import { ENDED_STATES } from './callstable.js';

/** Python source for "the call with this id": JSON string literals are valid Python ones. */
function callExpr(id) {
  return `[c for c in calls if c.id == ${JSON.stringify(id)}][0]`;
}

export class Actions {
  /**
   * els: {hangup, dtmfForm, dtmfDigits, dtmf, playForm, playUrl, play, recStart, recStop,
   *       terminate, target, status}
   * deps: {repl, hangup(callId) -> Promise<reply>, afterRecording()}
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.target = { session: null, call: null, sessionLive: false, callLive: false };
    els.hangup.addEventListener('click', safe(() => this._hangup()));
    els.dtmfForm.addEventListener('submit', (ev) => { ev.preventDefault(); safe(() => this._dtmf())(); });
    els.playForm.addEventListener('submit', (ev) => { ev.preventDefault(); safe(() => this._play())(); });
    els.recStart.addEventListener('click', safe(() => this._eval(
      `__web_rec = ${callExpr(this.target.call)}.record()\n__web_rec`, 'record')));
    els.recStop.addEventListener('click', safe(async () => {
      const reply = await this._eval('__web_rec.stop()\n__web_rec', 'stop recording');
      if (reply && reply.ok && !reply.error) this.deps.afterRecording();
    }));
    els.terminate.addEventListener('click', safe(() => this._eval('VoxEngine.terminate()', 'terminate')));
    this.update(this.target);
  }

  /** session: the session object (or null); call: the call object the actions are for (or null). */
  update({ session, call }) {
    const sessionLive = !!session && !session.ended && session.state === 'running';
    const callLive = !!call && !ENDED_STATES.has(call.state) && sessionLive;
    this.target = { session: session ? session.id : null, call: call ? call.id : null, sessionLive, callLive };
    const e = this.els;
    for (const b of [e.hangup, e.dtmf, e.play, e.recStart]) b.disabled = !callLive;
    e.dtmfDigits.disabled = e.playUrl.disabled = !callLive;
    e.recStop.disabled = !sessionLive;
    e.terminate.disabled = !sessionLive;
    setText(e.target, call ? `call ${call.id}${callLive ? '' : ' (ended)'}` : session ? 'no call' : '');
  }

  _say(text, bad = false) {
    setText(this.els.status, text);
    this.els.status.classList.toggle('bad', bad);
  }

  async _eval(source, label) {
    this._say(`${label}\u2026`);
    const reply = await this.deps.repl.run(source, { label });
    if (!reply.ok) this._say(`${label}: ${reply.error}`, true);
    else if (reply.error) this._say(`${label}: ${lastLine(reply.error)}`, true);
    else this._say(`${label}: ${reply.result ?? 'done'}`);
    return reply;
  }

  async _hangup() {
    const id = this.target.call;
    if (!id) return;
    this._say(`hanging up ${id}\u2026`);
    try {
      const reply = await this.deps.hangup(id);
      if (reply.ok) this._say(`hung up ${(reply.calls || [id]).join(', ')}`);
      else this._say(`hang-up failed: ${reply.error}`, true);
    } catch (err) {
      this._say(`hang-up failed: ${err.message}`, true);
    }
  }

  _dtmf() {
    const digits = this.els.dtmfDigits.value.trim();
    if (!digits) {
      this._say('type the digits to send first', true);
      this.els.dtmfDigits.focus();
      return;
    }
    this._eval(`${callExpr(this.target.call)}.send_digits(${JSON.stringify(digits)})`, `DTMF ${digits}`);
  }

  _play() {
    const url = this.els.playUrl.value.trim();
    if (!url) {
      this._say('type a file name or URL first', true);
      this.els.playUrl.focus();
      return;
    }
    this._eval(`${callExpr(this.target.call)}.start_playback(${JSON.stringify(url)})`, 'play');
  }
}

function lastLine(text) {
  const lines = String(text).trim().split('\n');
  return lines[lines.length - 1];
}
