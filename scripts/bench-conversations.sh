#!/usr/bin/env bash
# Conversation benchmark, from outside the process: a release `skald serve`
# on loopback answers N simulated callers at once (`skald simulate`, real SIP
# and RTP, real LibriVox speech; scripts/bench/conversation.yaml), first with
# the smart-turn end-of-turn model, then the same without preemptive replies
# (`turn.preemptive: false`: what preparing the reply during the pause
# saves), then with the silence rule only (`turn.detector: vad`). For each N it prints, over every caller turn:
#   - end of the caller's speech → first agent audio, as the callers heard it
#     (p50 / p90, ms; jitter buffers included);
#   - the same measured by skald (turn records: first_packet_ms), and its
#     end-of-turn decision time (decision_ms), p50 / p90;
#   - calls whose every check passed, skald's CPU (% of one core) and RSS.
# Tunables (environment): CALLS_LIST ("1 4 8"), DETECTORS ("smart-turn
# smart-turn-nopreempt vad"), BIN (target/release/skald).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS_LIST=${CALLS_LIST:-"1 4 8"}
DETECTORS=${DETECTORS:-"smart-turn smart-turn-nopreempt vad"}
SIP=${SIP_PORT:-15160}
HTTP=${HTTP_PORT:-18180}
BIN=${BIN:-target/release/skald}
TOKEN=bench-conversations-token-0123456789
WORK=$(mktemp -d)
SKALD=
trap '[ -n "$SKALD" ] && kill $SKALD 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
hz=$(getconf CLK_TCK)

for detector in $DETECTORS; do
  cfgdir="$WORK/cfg-$detector"
  cp -r sip-config "$cfgdir"
  sed -i "s/^      detector: smart-turn .*/      detector: ${detector%-nopreempt}/" "$cfgdir/skald.yaml"
  grep -q "detector: ${detector%-nopreempt}" "$cfgdir/skald.yaml" || { echo "cannot set the detector" >&2; exit 1; }
  if [ "$detector" != "${detector%-nopreempt}" ]; then
    sed -i "s/^      preemptive: true .*/      preemptive: false/" "$cfgdir/skald.yaml"
    grep -q "preemptive: false" "$cfgdir/skald.yaml" || { echo "cannot turn preemption off" >&2; exit 1; }
  fi
  SKALD_ADMIN_TOKEN=$TOKEN RUST_LOG=warn $BIN serve --config "$cfgdir/skald.yaml" --sip-listen 127.0.0.1:$SIP \
    --http-listen 127.0.0.1:$HTTP --rtp-ports 40000-41999 --data-dir "$WORK/data-$detector" >"$WORK/skald-$detector.log" 2>&1 &
  SKALD=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$HTTP/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  for n in $CALLS_LIST; do
    out="$WORK/$detector-$n"
    mkdir -p "$out"
    t0=$(awk '{print $14+$15}' "/proc/$SKALD/stat"); s0=$(date +%s.%N)
    pids=()
    for i in $(seq "$n"); do
      $BIN simulate scripts/bench/conversation.yaml --target "sip:+15550123@127.0.0.1:$SIP" \
        --json "$out/$i.json" >"$out/$i.txt" 2>&1 &
      pids+=($!)
      sleep 0.3
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    t1=$(awk '{print $14+$15}' "/proc/$SKALD/stat"); s1=$(date +%s.%N)
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$SKALD/status")
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP/api/v1/calls?limit=500" >"$out/calls.json"
    python3 - "$out" "$detector" "$n" "$TOKEN" "$HTTP" "$t0" "$t1" "$s0" "$s1" "$hz" "$rss" <<'PY'
import glob, json, sys, urllib.request
out, detector, n, token, http, t0, t1, s0, s1, hz, rss = sys.argv[1:]
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float('nan')
heard, passed, runs = [], 0, 0
for f in glob.glob(f"{out}/*.json"):
    if f.endswith("calls.json"):
        continue
    r = json.load(open(f)); runs += 1
    passed += bool(r.get("passed"))
    heard += [s["latency_ms"] for s in r["steps"][1:] if s.get("kind") == "expect" and s.get("latency_ms") is not None]
first, decision = [], []
calls = json.load(open(f"{out}/calls.json"))
calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
for c in calls:
    if c.get("invited_at", 0) < float(s0) * 1000:
        continue
    req = urllib.request.Request(f"http://127.0.0.1:{http}/api/v1/calls/{c['id']}", headers={"Authorization": f"Bearer {token}"})
    d = json.load(urllib.request.urlopen(req))
    for t in d.get("turns", []):
        l = t.get("latency") or {}
        if t["speaker"] == "agent" and l.get("first_packet_ms") is not None and l.get("stt_ms") is not None:
            first.append(l["first_packet_ms"])
            if l.get("decision_ms") is not None:
                decision.append(l["decision_ms"])
cpu = (int(t1) - int(t0)) / int(hz) / (float(s1) - float(s0)) * 100
print(f"{detector:10s} calls {n:>3s}: heard p50 {pct(heard,50):5.0f} p90 {pct(heard,90):5.0f} ms ({len(heard)} turns) | "
      f"skald first packet p50 {pct(first,50):5.0f} p90 {pct(first,90):5.0f}, decision p50 {pct(decision,50):4.0f} p90 {pct(decision,90):4.0f} ms | "
      f"passed {passed}/{runs} | cpu {cpu:4.0f}% | rss {int(rss)//1024} MB")
PY
  done
  kill $SKALD; wait $SKALD 2>/dev/null || true; SKALD=
done
