#!/usr/bin/env bash
# The reference for skald's Whisper log-mel features (tests/smart_turn.rs):
# pipecat's own numpy implementation, `_whisper_features.py`, taken from the
# same pinned PyPI wheel skald takes the smart-turn model from, with a pinned
# numpy in a virtualenv. Everything comes from PyPI through pip.
#
#   scripts/smart-turn-reference.sh [DIR]    (default: target/smart-turn-reference)
#
# Leaves DIR/venv (python3 + numpy) and DIR/_whisper_features.py; a second
# run with the same pins does nothing. Needs python3 with pip and venv
# (`make models-prereqs` installs them on Debian).
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:-target/smart-turn-reference}
PYTHON=${SKALD_PYTHON:-python3}

# Pins: the wheel as in src/providers/local/models.rs (PACKAGES), numpy as
# the models' conversion virtualenv.
PIPECAT=pipecat-ai==1.14.0
WHEEL=pipecat_ai-1.14.0-py3-none-any.whl
WHEEL_SHA256=0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44
MEMBER=pipecat/audio/turn/smart_turn/_whisper_features.py
NUMPY=numpy==2.4.6
STAMP="$PIPECAT $WHEEL_SHA256 $NUMPY"

if [[ -f $DIR/.ready && $(cat "$DIR/.ready") == "$STAMP" && -x $DIR/venv/bin/python && -f $DIR/_whisper_features.py ]]; then
    exit 0
fi

echo "smart-turn reference: $PIPECAT ($MEMBER) and $NUMPY into $DIR" >&2
rm -rf "$DIR"
mkdir -p "$DIR/wheels"
"$PYTHON" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$NUMPY"
"$DIR/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$DIR/wheels" "$PIPECAT"
got=$(sha256sum "$DIR/wheels/$WHEEL" | cut -d' ' -f1)
if [[ $got != "$WHEEL_SHA256" ]]; then
    echo "smart-turn reference: $WHEEL has sha256 $got, pinned $WHEEL_SHA256" >&2
    exit 1
fi
"$DIR/venv/bin/python" - "$DIR/wheels/$WHEEL" "$MEMBER" "$DIR/_whisper_features.py" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as out:
    shutil.copyfileobj(src, out)
EOF
"$DIR/venv/bin/python" -c "import sys; sys.path.insert(0, '$DIR'); import _whisper_features, numpy; print('numpy', numpy.__version__)" >&2
rm -rf "$DIR/wheels"
echo "$STAMP" > "$DIR/.ready"
