#!/usr/bin/env bash
# make bench-calls: a ramp of concurrent callers over Twilio Media Streams
# (`skald loadtest`) against a release `skald serve` in load-test mode
# (sip-config/loadtest.yaml: stand-in STT/TTS, real media path, VAD,
# smart-turn, turn-taking). Prints the table of reply latency, missed
# replies, pacing, CPU and RSS per step. Loopback only.
#   RAMP=1,50,100,200,400 DURATION=30 CONFIG=sip-config/loadtest.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
RAMP=${RAMP:-1,50,100,200,400}
DURATION=${DURATION:-30}
CONFIG=${CONFIG:-sip-config/loadtest.yaml}
SIP=${SIP_PORT:-15062}
HTTP=${HTTP_PORT:-18082}
BIN=${SKALD_BIN:-target/release/skald}
WORK=$(mktemp -d)
trap 'kill $SKALD 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
RUST_LOG=warn $BIN serve --config "$CONFIG" --sip-listen 127.0.0.1:$SIP --http-listen 127.0.0.1:$HTTP \
  --rtp-ports 40000-40999 --data-dir "$WORK/data" >"$WORK/skald.log" 2>&1 &
SKALD=$!
for _ in $(seq 150); do curl -fs "http://127.0.0.1:$HTTP/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$HTTP/health/ready" >/dev/null || { echo "skald did not start:" >&2; cat "$WORK/skald.log" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); config $CONFIG; $DURATION s per step"
echo "idle RSS: $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$SKALD/status)"
$BIN loadtest --twilio-url "ws://127.0.0.1:$HTTP/api/v1/twilio/media-stream" --calls "$RAMP" \
  --duration "$DURATION" --pid "$SKALD" --json "${JSON:-$WORK/bench-calls.json}" || true
