#!/usr/bin/env bash
# Check the systemd unit the way CI does:
#   1. `systemd-analyze verify` on the unit, alone, with each example drop-in in
#      systemd/examples/ and with the device drop-in tools/install-jetson.sh writes for this
#      machine; any output on stderr fails (verify only warns, with exit 0, about
#      unknown keys and bad values).
#   2. `systemd-analyze security --offline=true`: prints the table and fails when the
#      overall exposure of the unit is above the limit (3.0 unless --max-exposure says).
#
# Usage: tools/check_unit.sh [--max-exposure N] [UNIT]
#   UNIT defaults to systemd/edge-detector.service. verify needs ExecStart's binary to exist,
#   so a copy is checked whose ExecStart points at an existing edge-detector script:
#   $EDGE_DETECTOR_BIN, else .venv/bin/edge-detector, else `edge-detector` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=3.0
UNIT=systemd/edge-detector.service
while [ $# -gt 0 ]; do
  case "$1" in
    --max-exposure) MAX_EXPOSURE=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check_unit: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) UNIT=$1; shift ;;
  esac
done

fail() { echo "check_unit: FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt-get install systemd)"
[ -f "$UNIT" ] || fail "no unit file $UNIT"

BIN=${EDGE_DETECTOR_BIN:-}
if [ -z "$BIN" ]; then
  if [ -x .venv/bin/edge-detector ]; then BIN=$PWD/.venv/bin/edge-detector
  else BIN=$(command -v edge-detector || true)
  fi
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || fail "no edge-detector executable for ExecStart (run tools/setup.sh or set EDGE_DETECTOR_BIN)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=$(basename "$UNIT")

# A copy of the unit (and optionally one drop-in) in a fresh directory, ExecStart pointing at $BIN.
stage() {
  rm -rf "${work:?}/unit"
  mkdir -p "$work/unit"
  sed -E "s#^ExecStart=[^ ]*edge-detector #ExecStart=$BIN #" "$UNIT" >"$work/unit/$name"
  if [ -n "${1:-}" ]; then
    mkdir -p "$work/unit/$name.d"
    cp "$1" "$work/unit/$name.d/"
  fi
  grep -q "^ExecStart=$BIN " "$work/unit/$name" || fail "ExecStart of $UNIT does not run edge-detector"
}

verify() {  # $1: what is checked, for the messages
  local err
  err=$(cd "$work/unit" && systemd-analyze verify "./$name" 2>&1 >/dev/null) || fail "$1: systemd-analyze verify failed: $err"
  [ -z "$err" ] || fail "$1: systemd-analyze verify warns:
$err"
  echo "check_unit: verify OK: $1"
}

exposure() {  # prints the overall exposure of the staged unit, the table to stderr
  local out
  out=$(cd "$work/unit" && systemd-analyze security --offline=true --no-pager "./$name" 2>&1) \
    || fail "systemd-analyze security failed: $out"
  printf '%s\n' "$out" | grep -v "✓" >&2
  printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -1
}

stage ""
verify "$UNIT"
for dropin in systemd/examples/*.conf; do
  [ -f "$dropin" ] || continue
  stage "$dropin"
  verify "$UNIT + $dropin"
done
# The device drop-in the installer writes, as generated for this machine.
tools/install-jetson.sh --print-devices >"$work/10-devices.conf"
stage "$work/10-devices.conf"
verify "$UNIT + this machine's 10-devices.conf"

stage ""
score=$(exposure)
[ -n "$score" ] || fail "no exposure level in the output of systemd-analyze security"
echo "check_unit: security exposure of $name: $score (limit $MAX_EXPOSURE)"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' || fail "exposure $score is above $MAX_EXPOSURE"
for dropin in systemd/examples/*.conf; do
  [ -f "$dropin" ] || continue
  stage "$dropin"
  echo "check_unit: exposure with $(basename "$dropin"): $(exposure 2>/dev/null) (for information)"
done
