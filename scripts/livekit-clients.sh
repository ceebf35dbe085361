#!/usr/bin/env bash
# LiveKit's official Python server SDK, pinned, from PyPI: the tests certify
# skald's LiveKit test double with it, and check skald's tokens and
# webhooks against it (tests/livekit_api.rs).
#
#   scripts/livekit-clients.sh [DIR]    (default: target/livekit-clients)
#
# Leaves DIR/venv with livekit-api; a second run with the same pins does
# nothing. Needs python3 with pip and venv (`make models-prereqs` installs
# them on Debian).
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:-target/livekit-clients}
PYTHON=${SKALD_PYTHON:-python3}
PINS="livekit-api==1.2.2"

if [[ -f $DIR/.ready && $(cat "$DIR/.ready") == "$PINS" && -x $DIR/venv/bin/python ]]; then
    exit 0
fi
echo "livekit clients: $PINS into $DIR" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
"$PYTHON" -m venv "$DIR/venv"
# shellcheck disable=SC2086
"$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: $PINS
"$DIR/venv/bin/python" -c "import livekit.api; print('livekit-api', livekit.api.__version__ if hasattr(livekit.api, '__version__') else 'ok')" >&2
echo "$PINS" > "$DIR/.ready"
