// skald control page: audio over WebSocket.
// Wire format both ways: binary messages of 20 ms mono PCM16 little-endian
// at 16 kHz (320 samples, 640 bytes). Text messages are JSON.

export const RATE = 16000;
export const FRAME_SAMPLES = 320;
/** Playout delay the jitter buffer aims for, s. */
const JITTER_S = 0.08;
/** Audio queued beyond this is dropped to bound the delay, s. */
const MAX_QUEUE_S = 0.5;

/** Turns Float32 samples at `inRate` into 16 kHz PCM16 frames of 640 bytes. */
export class Framer {
  constructor(inRate) {
    this.ratio = inRate / RATE;
    this.pos = 0; // position of the next output sample in the pending input
    this.pending = new Float32Array(0);
    this.out = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  /** Feeds samples; returns the whole frames (ArrayBuffers) now ready. */
  push(samples) {
    const buf = new Float32Array(this.pending.length + samples.length);
    buf.set(this.pending);
    buf.set(samples, this.pending.length);
    const frames = [];
    const half = this.ratio / 2;
    while (this.pos + half < buf.length) {
      // Box filter over one output period (anti-aliasing when downsampling).
      let v;
      if (this.ratio <= 1) {
        const i = Math.floor(this.pos);
        const f = this.pos - i;
        v = buf[i] * (1 - f) + (buf[Math.min(i + 1, buf.length - 1)] || 0) * f;
      } else {
        const a = Math.max(0, Math.floor(this.pos - half));
        const b = Math.min(buf.length, Math.ceil(this.pos + half));
        let s = 0;
        for (let i = a; i < b; i++) s += buf[i];
        v = s / Math.max(1, b - a);
      }
      this.out[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.filled === FRAME_SAMPLES) {
        frames.push(this.out.slice(0).buffer);
        this.filled = 0;
      }
      this.pos += this.ratio;
    }
    const keep = Math.max(0, Math.floor(this.pos - half) - 1);
    this.pending = buf.slice(keep);
    this.pos -= keep;
    return frames;
  }
}

/** Plays 16 kHz PCM16 frames through Web Audio with a small jitter buffer. */
export class Player {
  constructor(ctx) {
    this.ctx = ctx;
    this.next = 0;
    this.gain = ctx.createGain();
    this.gain.connect(ctx.destination);
    this.frames = 0;
    this.sources = new Set(); // scheduled and not yet ended, for clear()
  }

  /** Drops everything buffered (the server's barge-in `clear`). */
  clear() {
    for (const src of this.sources) { try { src.stop(); } catch { /* not started */ } }
    this.sources.clear();
    this.next = 0;
  }

  push(arrayBuffer) {
    const pcm = new Int16Array(arrayBuffer.byteLength >> 1);
    const view = new DataView(arrayBuffer);
    for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(i * 2, true);
    if (!pcm.length) return;
    const now = this.ctx.currentTime;
    if (this.next < now + 0.01) this.next = now + JITTER_S; // underrun: rebuffer
    if (this.next > now + MAX_QUEUE_S) return; // too far behind: drop
    const buf = this.ctx.createBuffer(1, pcm.length, RATE);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.gain);
    src.onended = () => this.sources.delete(src);
    this.sources.add(src);
    src.start(this.next);
    this.next += buf.duration;
    this.frames++;
  }
}

/** The microphone as 16 kHz PCM16 frames: onFrame(ArrayBuffer). */
export class Mic {
  constructor(ctx, onFrame) {
    this.ctx = ctx;
    this.onFrame = onFrame;
    this.stream = null;
    this.nodes = [];
  }

  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('this browser gives no microphone here (it needs https or localhost)');
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const source = this.ctx.createMediaStreamSource(this.stream);
    const framer = new Framer(this.ctx.sampleRate);
    const feed = (samples) => { for (const f of framer.push(samples)) this.onFrame(f); };
    const mute = this.ctx.createGain();
    mute.gain.value = 0;
    mute.connect(this.ctx.destination);
    let node;
    try {
      await this.ctx.audioWorklet.addModule('/agent/gui/assets/pcm-worklet.js');
      node = new AudioWorkletNode(this.ctx, 'skald-capture', { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
      node.port.onmessage = (e) => feed(e.data);
    } catch {
      // Older browsers: the deprecated ScriptProcessor does the same job.
      node = this.ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (e) => feed(new Float32Array(e.inputBuffer.getChannelData(0)));
    }
    source.connect(node);
    node.connect(mute);
    this.nodes = [source, node, mute];
  }

  stop() {
    for (const n of this.nodes) { try { n.disconnect(); } catch { /* already */ } }
    this.nodes = [];
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }
}

/** A new AudioContext, at 16 kHz when the browser allows it. */
export function audioContext() {
  const AC = window.AudioContext || window.webkitAudioContext;
  try { return new AC({ sampleRate: RATE }); } catch { return new AC(); }
}

/**
 * One audio WebSocket: plays what the server sends, sends the microphone
 * while `setMic(true)`. Callbacks: onText(json), onOpen(), onClose(event).
 */
export class AudioLink {
  constructor(url, { onText = () => {}, onOpen = () => {}, onClose = () => {} } = {}) {
    this.url = url;
    this.onText = onText;
    this.onOpen = onOpen;
    this.onClose = onClose;
    this.ctx = audioContext();
    this.player = new Player(this.ctx);
    this.mic = null;
    this.micOn = false;
    this.ws = null;
    this.sent = 0;
  }

  open() {
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => { this.ctx.resume(); this.onOpen(); };
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') {
        try { this.onText(JSON.parse(m.data)); } catch { /* not JSON: ignored */ }
      } else {
        this.player.push(m.data);
      }
    };
    ws.onclose = (e) => { if (this.ws === ws) this.onClose(e); };
  }

  /** Starts or stops sending the microphone. */
  async setMic(on) {
    this.micOn = on;
    if (on && !this.mic) {
      const mic = new Mic(this.ctx, (frame) => {
        if (this.micOn && this.ws && this.ws.readyState === WebSocket.OPEN) {
          this.ws.send(frame);
          this.sent++;
        }
      });
      this.mic = mic;
      try {
        await mic.start();
      } catch (e) {
        this.mic = null;
        this.micOn = false;
        throw e;
      }
    } else if (!on && this.mic) {
      this.mic.stop();
      this.mic = null;
    }
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    if (this.mic) this.mic.stop();
    this.mic = null;
    this.ctx.close().catch(() => {});
  }
}
