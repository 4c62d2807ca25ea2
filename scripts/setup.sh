#!/usr/bin/env bash
# Sets up voxlab on a Debian machine: system packages (when missing), a virtualenv
# in .venv with voxlab installed editable plus the test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# portaudio19-dev/libportaudio2: PortAudio, which PyAudio (the 'phone' extra: voxlab
# phone's sound card) is built against and runs on.
# chromium and firefox-esr: the browsers the web console and softphone tests drive
# (Playwright uses /usr/bin/chromium, Firefox is driven over WebDriver BiDi; no test
# ever downloads a browser of its own).
APT_PACKAGES=(sip-tester baresip-core linphone-cli sox espeak-ng python3-venv
              portaudio19-dev libportaudio2 chromium firefox-esr)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
# python3-venv only matters for Debian's own python3; a python3 that can already
# make virtualenvs (pyenv, a venv-capable build) does not need it.
if python3 -c 'import ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# An editable install puts the checkout on sys.path (package_dir in setup.cfg), so
# twistd finds twisted/plugins/voxlab_plugin.py and edits take effect without reinstalling.
.venv/bin/python -m pip install -q -e '.[test]'
# The sound card for voxlab phone. PyAudio ships no Linux wheel, so pip builds it: should
# that fail (no compiler), voxlab phone still works with --audio-in/--audio-out files.
.venv/bin/python -m pip install -q -e '.[test,phone]' \
  || echo "setup: PyAudio did not install: voxlab phone will use files only (--audio-in/--audio-out)"
.venv/bin/python -c 'import voxlab; print("setup: voxlab", voxlab.__version__, "ready in .venv")'
