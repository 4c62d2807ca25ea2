// audio.js: the softphone's Web Audio pieces: one shared AudioContext, level meters fed by
// an AnalyserNode on a MediaStream, the incoming-call ring (a repeating two-tone beep from
// OscillatorNodes) and a short key-press tone for the dial pad.

let ctx = null;

/** The shared AudioContext, created (and resumed) on first use; call it from a user gesture. */
export function audioContext() {
  if (!ctx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    ctx = new AC();
  }
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

/** Shows the level of a MediaStream on a <meter> (0..1 over -60..0 dBFS), every 80 ms. */
export class StreamMeter {
  constructor(meterEl) {
    this.el = meterEl;
    this.source = null;
    this.analyser = null;
    this.timer = null;
    this.buf = null;
    this.muted = false;
  }

  attach(stream) {
    this.detach();
    const ac = audioContext();
    if (!ac || !stream || stream.getAudioTracks().length === 0) return;
    try {
      this.source = ac.createMediaStreamSource(stream);
    } catch (err) {
      console.warn('meter: cannot read the stream', err);
      return;
    }
    this.analyser = ac.createAnalyser();
    this.analyser.fftSize = 1024;
    this.buf = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);   // not to the destination: the meter is silent
    this.timer = setInterval(() => this._tick(), 80);
  }

  detach() {
    clearInterval(this.timer);
    this.timer = null;
    try { this.source && this.source.disconnect(); } catch { /* already gone */ }
    this.source = null;
    this.analyser = null;
    this._show(-100);
  }

  _tick() {
    if (!this.analyser) return;
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (let i = 0; i < this.buf.length; i++) sum += this.buf[i] * this.buf[i];
    const rms = Math.sqrt(sum / this.buf.length);
    this._show(rms > 0 ? 20 * Math.log10(rms) : -100);
  }

  _show(db) {
    const f = Math.min(1, Math.max(0, (db + 60) / 60));
    // A little smoothing on the way down, so the bar is readable.
    const prev = Number(this.el.value) || 0;
    const v = f >= prev ? f : prev * 0.6 + f * 0.4;
    this.el.value = v < 0.005 ? 0 : v;
    this.el.dataset.db = String(Math.round(db));
  }
}

/** The incoming-call ring: two short alternating tones, repeated every 2 s, while started. */
export class Ringer {
  constructor() {
    this.timer = null;
    this.nodes = [];
  }

  get ringing() {
    return this.timer !== null;
  }

  start() {
    if (this.timer) return;
    const ac = audioContext();
    if (!ac) return;
    const burst = () => {
      const t = ac.currentTime + 0.02;
      // 880 / 660 Hz, 4 beeps of 120 ms.
      [880, 660, 880, 660].forEach((f, i) => this._beep(ac, f, t + i * 0.16, 0.12, 0.12));
    };
    burst();
    this.timer = setInterval(burst, 2000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const n of this.nodes) { try { n.stop(); } catch { /* not started or done */ } }
    this.nodes = [];
  }

  _beep(ac, freq, at, len, level) {
    const osc = ac.createOscillator();
    const gain = ac.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(level, at + 0.01);
    gain.gain.setValueAtTime(level, at + len - 0.02);
    gain.gain.linearRampToValueAtTime(0, at + len);
    osc.connect(gain).connect(ac.destination);
    osc.start(at);
    osc.stop(at + len + 0.01);
    this.nodes.push(osc);
    osc.onended = () => {
      this.nodes = this.nodes.filter((n) => n !== osc);
      gain.disconnect();
    };
  }
}

const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  '*': [941, 1209], 0: [941, 1336], '#': [941, 1477],
};

/** A quiet 100 ms DTMF tone as feedback for a dial-pad key (local only). */
export function keyTone(digit) {
  const pair = DTMF[digit];
  const ac = audioContext();
  if (!pair || !ac) return;
  const t = ac.currentTime + 0.01;
  const gain = ac.createGain();
  gain.gain.setValueAtTime(0, t);
  gain.gain.linearRampToValueAtTime(0.05, t + 0.005);
  gain.gain.setValueAtTime(0.05, t + 0.09);
  gain.gain.linearRampToValueAtTime(0, t + 0.1);
  gain.connect(ac.destination);
  for (const f of pair) {
    const osc = ac.createOscillator();
    osc.frequency.value = f;
    osc.connect(gain);
    osc.start(t);
    osc.stop(t + 0.11);
    osc.onended = () => osc.disconnect();
  }
}
