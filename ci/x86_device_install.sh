#!/usr/bin/env bash
# The device install on x86-64: `pip install 'edgesdk[runtime]'` from the project's wheel into a
# fresh venv (no torch, no checkout on the path), then every runtime verb there (runtime_verbs.sh).
# Usage: x86_device_install.sh WHEEL BUNDLES_DIR CLIPS_DIR VENV_DIR
set -euo pipefail
WHEEL=$(realpath -m "${1:?usage: x86_device_install.sh WHEEL BUNDLES_DIR CLIPS_DIR VENV_DIR}")
BUNDLES=$(realpath -m "${2:?bundles dir}")
CLIPS=$(realpath -m "${3:?clips dir}")
VENV=$(realpath -m "${4:?venv dir}")
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "x86-64 device install: FAIL: $*" >&2; exit 1; }
[ -f "$WHEEL" ] || die "no wheel at $WHEEL"
# A device has no checkout: nothing of the host's path may leak in (pip would take a checkout's
# egg-info on PYTHONPATH for an installed edgesdk and skip it).
unset PYTHONPATH
cd /

rm -rf "$VENV"
python3 -m venv "$VENV" || die "python3 -m venv"
"$VENV/bin/pip" install --quiet "$WHEEL[runtime]" > "$VENV.pip.log" 2>&1 \
    || { tail -20 "$VENV.pip.log"; die "pip install edgesdk[runtime] from $WHEEL"; }
[ -x "$VENV/bin/edgesdk" ] || die "the wheel installed no edgesdk command"
if "$VENV/bin/pip" show torch >/dev/null 2>&1; then die "torch came with edgesdk[runtime]"; fi
echo "  installed $(basename "$WHEEL")[runtime] in a fresh venv: $("$VENV/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(edgesdk|numpy|onnxruntime|ai-edge-litert)==' | paste -sd ' ' -)"
"$VENV/bin/python" -c 'import edgesdk, sys; sys.exit(0 if "site-packages" in edgesdk.__file__ else f"edgesdk imported from {edgesdk.__file__}")' \
    || die "edgesdk does not come from the venv"
# The device's view: the venv's commands first, no checkout or host packages on the path.
PATH="$VENV/bin:/usr/bin:/bin" "$HERE/runtime_verbs.sh" "$BUNDLES" "$CLIPS" measured:perf_counter
