#!/usr/bin/env bash
# make dev-tunnel NUMBER=+15551234567 [PORT=8080]: exposes a local skald to
# Twilio through a tunnel tool you already have (cloudflared, or ngrok), then
# points the number's voice webhook and status callback at the tunnel
# (`skald twilio update-webhook`). skald itself must be running on PORT
# (`make run`). Ctrl-C closes the tunnel. Nothing is downloaded: with
# neither tool installed, it says so and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
NUMBER=${NUMBER:?give the Twilio number: make dev-tunnel NUMBER=+15551234567}
PORT=${PORT:-8080}
LOG=$(mktemp)
trap 'kill $TUNNEL 2>/dev/null || true; rm -f "$LOG"' EXIT

if command -v cloudflared >/dev/null; then
    cloudflared tunnel --no-autoupdate --url "http://127.0.0.1:$PORT" >"$LOG" 2>&1 &
    TUNNEL=$!
    pattern='https://[a-z0-9-]+\.trycloudflare\.com'
elif command -v ngrok >/dev/null; then
    ngrok http "$PORT" --log stdout --log-format logfmt >"$LOG" 2>&1 &
    TUNNEL=$!
    pattern='https://[a-zA-Z0-9.-]+\.ngrok[a-z.-]*\.(app|io|dev)'
else
    echo "dev-tunnel: no tunnel tool found: install cloudflared or ngrok, or give skald a public URL (twilio.public_url)" >&2
    exit 1
fi

URL=""
for _ in $(seq 150); do
    URL=$(grep -oE "$pattern" "$LOG" | head -1 || true)
    [[ -n $URL ]] && break
    kill -0 "$TUNNEL" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.2
done
[[ -n $URL ]] || { echo "dev-tunnel: the tunnel gave no public URL in 30 s:" >&2; cat "$LOG" >&2; exit 1; }
echo "dev-tunnel: $URL -> http://127.0.0.1:$PORT"
target/release/skald twilio update-webhook --number "$NUMBER" --public-url "$URL"
echo "dev-tunnel: calls to $NUMBER now reach this skald; Ctrl-C to stop"
wait "$TUNNEL"
