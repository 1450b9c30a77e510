#!/usr/bin/env bash
# Set up everything edge-detector needs on Debian/Ubuntu (and JetPack): system packages,
# a virtualenv in .venv, the package itself, and the demo assets. Safe to run again.
#   tools/setup.sh            system packages + venv + package + assets
#   SKIP_APT=1 tools/setup.sh skip apt-get (packages already present)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(
  build-essential pkg-config python3-venv python3-dev libcairo2-dev libgirepository1.0-dev gobject-introspection
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav libsystemd-dev systemd mosquitto mosquitto-clients openssl
)

log() { printf '[setup] %s\n' "$*" >&2; }

install_apt() {
  [ "${SKIP_APT:-0}" = 1 ] && { log "SKIP_APT=1: not installing system packages"; return; }
  command -v dpkg-query >/dev/null || { log "not a Debian/Ubuntu system: install the equivalents of: ${APT_PACKAGES[*]}"; return; }
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "system packages present"; return; }
  log "installing system packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    # On a Jetson the venv must see JetPack's tensorrt and pycuda.
    local extra=""; [ -f /etc/nv_tegra_release ] && extra="--system-site-packages"
    "$PYTHON" -m venv $extra "$VENV"
  fi
  local stamp="$VENV/.edge-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing Python packages into $VENV"
    "$VENV/bin/python" -m pip install -q -U pip
    "$VENV/bin/python" -m pip install -q -e ".[gst,systemd,dev]"
    touch "$stamp"
  else
    log "Python packages present"
  fi
}

install_apt
install_venv
"$VENV/bin/python" tools/assets.py ensure
