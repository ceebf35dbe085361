// AudioWorklet of the skald control page: hands the microphone's samples
// (mono Float32 at the context's rate) to the page in ~20 ms batches.
class SkaldCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.batch = new Float32Array(Math.max(128, Math.round(sampleRate / 50)));
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input[0]) {
      const ch = input[0];
      let i = 0;
      while (i < ch.length) {
        const n = Math.min(ch.length - i, this.batch.length - this.filled);
        this.batch.set(ch.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === this.batch.length) {
          this.port.postMessage(this.batch.slice(0));
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('skald-capture', SkaldCapture);
