#!/usr/bin/env bash
# Load benchmark: a release `skald serve` on loopback, driven by sipp.
#   1. call setup rate: sipp's stock `uac` (INVITE/180/200/ACK/BYE, no pause)
#      at RATE calls/s for SETUPS calls; prints achieved setups/s and failures.
#   2. concurrent echo calls held in real time: CALLS calls, each sending real
#      speech (PCMU, 20 ms) for DURATION s; prints skald's CPU per call, RSS,
#      RTP packets sent vs expected and the send-lateness percentiles that
#      skald measures on its media clock.
# Tunables (environment): RATE SETUPS CALLS DURATION, SERVICE (the number
# called; default echo) and CONFIG (default sip-config/skald.yaml; a
# load-test config with stand-in providers measures voice agents without
# model inference). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-500}
SETUPS=${SETUPS:-5000}
CALLS=${CALLS:-200}
DURATION=${DURATION:-20}
SERVICE=${SERVICE:-echo}
CONFIG=${CONFIG:-sip-config/skald.yaml}
SIP=${SIP_PORT:-15060}
HTTP=${HTTP_PORT:-18080}
BIN=${SKALD_BIN:-target/release/skald}
# /metrics needs a viewer token: a throwaway admin token for this run.
export SKALD_ADMIN_TOKEN="bench-load-$RANDOM$RANDOM"
AUTH="Authorization: Bearer $SKALD_ADMIN_TOKEN"
WORK=$(mktemp -d)
trap 'kill $SKALD 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

RUST_LOG=warn $BIN serve --config "$CONFIG" --sip-listen 127.0.0.1:$SIP \
  --http-listen 127.0.0.1:$HTTP --rtp-ports 20000-39999 --data-dir "$WORK/data" >"$WORK/skald.log" 2>&1 &
SKALD=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

cpu_ticks() { awk '{print $14+$15}' "/proc/$SKALD/stat"; }
metric() { curl -s -H "$AUTH" "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1 ~ "^"m {s+=$2} END {printf "%.0f", s}'; }
hz=$(getconf CLK_TCK)

echo "== call setups: $SETUPS calls offered at $RATE/s (stock sipp uac, PCMU) =="
t0=$(date +%s.%N)
sipp 127.0.0.1:$SIP -sn uac -s "$SERVICE" -i 127.0.0.1 -p 15070 -mp 16000 -r "$RATE" -m "$SETUPS" -l 2000 -d 0 \
  -nostdin -trace_err -error_file "$WORK/setup_err.log" >"$WORK/setup.out" 2>&1 || true
t1=$(date +%s.%N)
count() { grep -E "$1" "$2" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }
ok=$(count "Successful call" "$WORK/setup.out")
failed=$(count "Failed call" "$WORK/setup.out")
echo "successful: ${ok:-?}  failed: ${failed:-?}  elapsed: $(echo "$t1 - $t0" | bc) s  achieved: $(echo "scale=1; ${ok:-0} / ($t1 - $t0)" | bc) setups/s"

echo "== $CALLS concurrent calls to $SERVICE for $DURATION s, real speech both ways =="
sox /usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav -r 8000 -c 1 -t ul "$WORK/speech.ul"
python3 scripts/ulaw_to_pcap.py "$WORK/speech.ul" "$WORK/speech.pcap" "$DURATION"
sed -e "s|@PTS@|0 101|" -e "s|@MEDIA_PORT@|[media_port]|" -e "s|@ANSWER_RE@|m=audio|" \
    -e "s|@MEDIA@|  <nop><action><exec play_pcap_audio=\"$WORK/speech.pcap\"/></action></nop>|" \
    tests/sipp/uac_call.xml >"$WORK/load.xml"
sent0=$(metric 'skald_rtp_packets_total{direction="out"')
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$SKALD/status")
sipp 127.0.0.1:$SIP -sf "$WORK/load.xml" -s "$SERVICE" -i 127.0.0.1 -p 15071 -mp 17000 -r 100 -m "$CALLS" -l "$CALLS" \
  -d $((DURATION * 1000)) -nostdin -trace_err -error_file "$WORK/load_err.log" >"$WORK/load.out" 2>&1 &
SIPP=$!
sleep $((CALLS / 100 + 3))
c0=$(cpu_ticks); w0=$(date +%s.%N)
active=$(metric skald_active_calls)
sleep $((DURATION / 2))
c1=$(cpu_ticks); w1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SKALD/status")
wait $SIPP || true
sent1=$(metric 'skald_rtp_packets_total{direction="out"')
ok=$(count "Successful call" "$WORK/load.out")
cpu=$(echo "scale=3; ($c1 - $c0) / $hz / ($w1 - $w0)" | bc)
echo "calls live mid-run: $active; successful: ${ok:-?} of $CALLS"
echo "skald CPU: $cpu cores for $active calls = $(echo "scale=2; 100 * $cpu / ($active + 0.0001)" | bc) % of a core per call"
echo "RSS: $((rss0 / 1024)) MiB idle (models loaded) -> $((rss / 1024)) MiB with $active calls = $(( (rss - rss0) / (active + 1) )) KiB per call"
echo "RTP packets sent: $((sent1 - sent0)) (expected about $((CALLS * DURATION * 50)))"
curl -s -H "$AUTH" "http://127.0.0.1:$HTTP/metrics" | python3 scripts/histogram_quantiles.py skald_rtp_send_lateness_ms 0.5 0.99 0.999
