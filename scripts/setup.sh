#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian/Ubuntu machine, idempotently:
# Debian packages (as root, or with sudo), then a virtual environment with the host tools.
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."

DEBS="espeak-ng sox mosquitto valgrind fluidsynth fluid-soundfont-gm strace"
# Reserved evaluation voices and real recordings for bench wakeword (never used in training).
DEBS="$DEBS flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts pocketsphinx-testdata"
# Other x86-64 CPUs, emulated, for the test that a portable training makes the same bytes.
DEBS="$DEBS qemu-user"
missing=""
for pkg in $DEBS; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "setup: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test,train]"
# The I2C codec drivers use I2CDevice; --no-deps keeps out Adafruit-Blinka, whose CPython
# package named `micropython` would break the `micropython` command.
"$VENV/bin/python" -m pip install -q --no-deps adafruit-circuitpython-busdevice
# The ESP32-S3 MicroPython stubs go in a folder of their own: mypy uses them in place of
# CPython's typeshed when it type-checks the firmware (mypy-firmware.ini).
STUBS_VER=1.29.0.post1
if [ ! -f "$VENV/mpy-stubs/.v$STUBS_VER" ]; then
    rm -rf "$VENV/mpy-stubs"
    "$VENV/bin/python" -m pip install -q --no-deps --target "$VENV/mpy-stubs" \
        "micropython-esp32-esp32-generic-s3-stubs==$STUBS_VER" micropython-stdlib-stubs
    touch "$VENV/mpy-stubs/.v$STUBS_VER"
fi
echo "setup: done ($VENV)"
