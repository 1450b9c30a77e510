#!/usr/bin/env bash
# Install edge-detector as a systemd service on a Jetson (JetPack 5/6) or on plain
# Debian/Ubuntu. Run as root from a checkout; safe to run again (it updates in place).
#
#   tools/install-jetson.sh              install or update, enable; start if the config is valid
#   tools/install-jetson.sh --uninstall  stop, disable and remove everything it installed
#
# Options:
#   --dry-run          print what would be done, change nothing
#   --no-apt           do not install system packages with apt-get
#   --no-start         install and enable, but do not (re)start the service
#   --keep-data        with --uninstall: keep /etc/edge-detector and /var/lib/edge-detector
#   --python PY        interpreter for the virtualenv (default: python3; 3.8 or newer)
#   --pip-args "ARGS"  extra arguments for pip (e.g. "--no-index --find-links /srv/wheels")
#   --print-devices    print the device drop-in for this board and exit
#
# What it creates: system user and group `edge-detector` (also in `video`, and `render` where
# it exists); /opt/edge-detector/venv (a virtualenv with --system-site-packages, so JetPack's
# TensorRT, pycuda and python3-gi are visible); /etc/edge-detector/config.yaml (from
# config/edge.example.yaml, never overwritten) and an empty mqtt-password credential file;
# /var/lib/edge-detector/models; the unit /etc/systemd/system/edge-detector.service and the
# drop-in edge-detector.service.d/10-devices.conf allowing this board's GPU and codec nodes.
set -euo pipefail

NAME=edge-detector
PREFIX=/opt/$NAME
VENV=$PREFIX/venv
ETC=/etc/$NAME
STATE=/var/lib/$NAME
CACHE=/var/cache/$NAME
UNIT_DIR=/etc/systemd/system
UNIT=$UNIT_DIR/$NAME.service
DROPIN_DIR=$UNIT_DIR/$NAME.service.d
DEV=${EDGE_DEV_ROOT:-/dev}  # tests point this at a fake /dev
SRC=$(cd "$(dirname "$0")/.." && pwd)

ACTION=install DRY=0 APT=1 START=1 KEEP=0 PYTHON=python3 PIP_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) ACTION=uninstall ;;
    --print-devices) ACTION=devices ;;
    --dry-run) DRY=1 ;;
    --no-apt) APT=0 ;;
    --no-start) START=0 ;;
    --keep-data) KEEP=1 ;;
    --python) PYTHON=$2; shift ;;
    --pip-args) PIP_ARGS=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-jetson: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }
run() {  # run a command, or print it under --dry-run
  if [ "$DRY" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
write() {  # write stdin to $1 with mode $2 and owner $3, only when the content changed
  local path=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ "$DRY" = 1 ]; then
    printf '+ write %s (mode %s, owner %s):\n' "$path" "$mode" "$owner"; sed 's/^/    /' "$tmp"; rm -f "$tmp"; return
  fi
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
    rm -f "$tmp"
    CHANGED=1
  fi
}
systemd_running() { [ -d /run/systemd/system ]; }

# ------------------------------------------------------------------ platform
JETSON="" L4T="" MODEL=""
if [ -f /etc/nv_tegra_release ]; then
  # "# R35 (release), REVISION: 4.1, GCID: ..." -> 35.4.1
  L4T=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release)
  JETSON=1
fi
if [ -r /proc/device-tree/model ]; then MODEL=$(tr -d '\0' </proc/device-tree/model); fi

# The GPU, codec, DLA and camera-ISP nodes of this board, as DeviceAllow= lines.
device_dropin() {
  local nodes=() p
  shopt -s nullglob
  for p in "$DEV"/nvhost-* "$DEV"/nvmap "$DEV"/nvgpu/*/* "$DEV"/host1x-fence "$DEV"/nvsciipc \
           "$DEV"/nvidia[0-9]* "$DEV"/nvidiactl "$DEV"/nvidia-uvm "$DEV"/nvidia-uvm-tools \
           "$DEV"/dri/renderD* "$DEV"/v4l2-nvdec "$DEV"/v4l2-nvenc; do
    if [ -c "$p" ]; then nodes+=("/dev/${p#"$DEV"/}"); fi
  done
  shopt -u nullglob
  echo "# Written by tools/install-jetson.sh: the GPU, codec and DLA device nodes present on"
  echo "# ${MODEL:-this machine}${L4T:+ (L4T $L4T)} at install time. Run the installer again after a"
  echo "# JetPack upgrade or a new GPU. Cameras (video4linux) are allowed by the unit itself."
  echo "[Service]"
  for p in "${nodes[@]}"; do echo "DeviceAllow=$p rw"; done
}

if [ "$ACTION" = devices ]; then device_dropin; exit 0; fi
[ "$DRY" = 1 ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...), or add --dry-run to see what it would do"
command -v systemctl >/dev/null || die "systemd is required (systemctl not found)"

# ------------------------------------------------------------------ uninstall
uninstall() {
  if [ -f "$UNIT" ] || [ -d "$DROPIN_DIR" ]; then
    if systemd_running; then
      run systemctl disable --now "$NAME.service" || true
    else
      run systemctl disable "$NAME.service" || true
    fi
    run rm -rf "$UNIT" "$DROPIN_DIR"
    if systemd_running; then run systemctl daemon-reload; run systemctl reset-failed "$NAME.service" 2>/dev/null || true; fi
  fi
  [ -e "$PREFIX" ] && run rm -rf "$PREFIX"
  if [ "$KEEP" = 0 ]; then
    for d in "$ETC" "$STATE" "$CACHE" "/var/lib/private/$NAME" "/var/cache/private/$NAME"; do
      [ -e "$d" ] && run rm -rf "$d"
    done
  else
    say "kept $ETC and $STATE (--keep-data)"
  fi
  [ -e "$CACHE" ] && run rm -rf "$CACHE"
  if getent passwd "$NAME" >/dev/null; then run userdel "$NAME"; fi
  if getent group "$NAME" >/dev/null; then run groupdel "$NAME"; fi
  say "uninstalled (system packages installed by apt were left in place)"
}

if [ "$ACTION" = uninstall ]; then uninstall; exit 0; fi

# ------------------------------------------------------------------ install
say "platform: ${MODEL:-unknown}${JETSON:+, JetPack (L4T $L4T)}"
[ -f "$SRC/pyproject.toml" ] && [ -f "$SRC/systemd/$NAME.service" ] || die "run this from an edge-detector checkout"

install_apt() {
  local pkgs=(python3-venv python3-pip python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
              gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
              gstreamer1.0-plugins-bad gstreamer1.0-libav python3-systemd)
  [ "$APT" = 1 ] || { say "--no-apt: not installing system packages"; return; }
  command -v apt-get >/dev/null || { say "no apt-get: install the equivalents of ${pkgs[*]}"; return; }
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { say "system packages present"; return; }
  say "installing system packages: ${missing[*]}"
  run apt-get update -q
  DEBIAN_FRONTEND=noninteractive run apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_python() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (use --python)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die \
    "$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())'); edge-detector needs 3.8+ (JetPack 4 ships 3.6: install python3.8 and pass --python python3.8; TensorRT's Python bindings are then not visible and ONNX Runtime runs on the CPU)"
  if [ -n "$JETSON" ] && ! "$PYTHON" -c 'import tensorrt' 2>/dev/null; then
    say "warning: $PYTHON cannot import tensorrt: install JetPack's python3-libnvinfer, or ONNX Runtime runs on the CPU"
  fi
}

create_user() {
  getent group "$NAME" >/dev/null || run groupadd --system "$NAME"
  if ! getent passwd "$NAME" >/dev/null; then
    run useradd --system --gid "$NAME" --home-dir "$STATE" --no-create-home \
      --shell /usr/sbin/nologin --comment "edge-detector daemon" "$NAME"
  fi
  local g groups=()
  for g in video render; do getent group "$g" >/dev/null && groups+=("$g"); done
  if [ ${#groups[@]} -gt 0 ]; then run usermod -a -G "$(IFS=,; echo "${groups[*]}")" "$NAME"; fi
}

create_dirs() {
  run install -d -m 0755 -o root -g root "$PREFIX"
  run install -d -m 0750 -o root -g "$NAME" "$ETC"
  run install -d -m 0750 -o "$NAME" -g "$NAME" "$STATE" "$STATE/models"
  if [ ! -f "$ETC/config.yaml" ]; then
    run install -m 0640 -o root -g "$NAME" "$SRC/config/edge.example.yaml" "$ETC/config.yaml"
    NEW_CONFIG=1
  fi
  # The MQTT password (LoadCredential=): root-only; systemd hands it to the service.
  [ -f "$ETC/mqtt-password" ] || run install -m 0600 -o root -g root /dev/null "$ETC/mqtt-password"
}

install_venv() {
  if [ -x "$VENV/bin/python" ] && ! grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
    say "recreating $VENV with --system-site-packages"
    run rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    run "$PYTHON" -m venv --system-site-packages "$VENV"
  fi
  local constraints=() extra=""
  if [ -n "$JETSON" ]; then
    # JetPack's tensorrt/pycuda bindings are built against numpy 1.x.
    printf 'numpy<2\n' | write "$PREFIX/constraints.txt" 0644 root:root
    constraints=(-c "$PREFIX/constraints.txt")
    "$PYTHON" -c 'import pycuda' 2>/dev/null || extra="[jetson]"  # pycuda builds against /usr/local/cuda
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  say "installing edge-detector$extra into $VENV"
  # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
  run "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${constraints[@]}" $PIP_ARGS "$SRC$extra"
  run "$VENV/bin/edge-detector" --version
}

install_unit() {
  CHANGED=0
  run install -d -m 0755 "$DROPIN_DIR"
  sed -E "s#^ExecStart=[^ ]*edge-detector #ExecStart=$VENV/bin/edge-detector #" "$SRC/systemd/$NAME.service" \
    | write "$UNIT" 0644 root:root
  device_dropin | write "$DROPIN_DIR/10-devices.conf" 0644 root:root
  if systemd_running; then
    run systemctl daemon-reload
    run systemctl enable "$NAME.service"
  else
    say "systemd is not running (chroot or container): enabling offline, not starting"
    run systemctl enable "$NAME.service"
    START=0
  fi
}

start_service() {
  [ "$START" = 1 ] || return 0
  if [ "$DRY" = 0 ] && ! runuser -u "$NAME" -- "$VENV/bin/edge-detector" check-config "$ETC/config.yaml" >&2; then
    say "not starting: fix $ETC/config.yaml (see docs/configuration.md), then: systemctl restart $NAME"
    return 0
  fi
  run systemctl restart "$NAME.service"
  say "started; follow it with: journalctl -u $NAME -f"
}

NEW_CONFIG=0 CHANGED=0
install_apt
check_python
create_user
create_dirs
install_venv
install_unit
start_service
[ "$NEW_CONFIG" = 1 ] && say "example config installed: edit $ETC/config.yaml (cameras, model.path, mqtt)"
say "installed: $UNIT, $DROPIN_DIR/10-devices.conf, $VENV, $ETC, $STATE"
