#!/usr/bin/env bash
# make test-arm64: the torch-free runtime, installed from the project's wheel, proven in an
# aarch64 Debian userland under qemu-user against the x86-64 host. Needs root.
# Usage: ci/arm64/test_arm64.sh HOST_VENV_BIN   (the x86-64 venv with edgesdk[all])
set -euo pipefail
BIN=$(cd "${1:?usage: test_arm64.sh HOST_VENV_BIN}" && pwd)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$REPO/build/arm64            # wheel, host outputs (gitignored)
ROOT=$REPO/build/arm64-root       # cached userland
HERE=$REPO/ci/arm64
export PYTHONPATH=$REPO PATH=$BIN:$PATH   # the host runs this checkout's code
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }
die() { echo "test-arm64: FAIL: $*" >&2; exit 1; }
exporter=
cleanup() {
    [ -z "$exporter" ] || kill "$exporter" 2>/dev/null || true
    if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}
trap cleanup EXIT

# The host exports (torch, a few minutes) run while the userland is built.
rm -rf "$WORK/bundles" "$WORK/x86_64" "$WORK/aarch64" && mkdir -p "$WORK"
step "host: exporting the bundles in the background (KWS demo + the smallest preset of each family)"
python "$HERE/host_bundles.py" "$WORK/bundles" > "$WORK/export.log" 2>&1 &
exporter=$!

step "userland"
"$HERE/setup_userland.sh" "$ROOT"

step "wheel and edgesdk[runtime] for aarch64 (no torch)"
rm -rf "$WORK/dist" "$WORK/site"
# python -m build, as a release would: packaging itself is under test.
python -m build --wheel --outdir "$WORK/dist" "$REPO" > "$WORK/build.log" 2>&1 \
    || { tail -20 "$WORK/build.log"; die "python -m build --wheel (see $WORK/build.log)"; }
wheel=$(ls "$WORK"/dist/edgesdk-*.whl) || die "python -m build wrote no wheel"
platforms=()
for tag in 2_36 2_35 2_34 2_31 2_28 2_27 2_17; do platforms+=(--platform "manylinux_${tag}_aarch64"); done
pip install --no-compile --target "$WORK/site" "${platforms[@]}" --python-version 3.11 \
    --implementation cp --only-binary=:all: "$wheel[runtime]" > "$WORK/pip.log" 2>&1 \
    || { grep -v "is ignored" "$WORK/pip.log" | tail -20; die "pip install --target of edgesdk[runtime] for aarch64"; }
[ -d "$WORK/site/edgesdk" ] && [ -d "$WORK/site/onnxruntime" ] && [ -d "$WORK/site/ai_edge_litert" ] \
    || die "pip install --target of edgesdk[runtime] for aarch64"
[ ! -e "$WORK/site/torch" ] || die "torch got into the runtime install"
site=$ROOT/usr/local/lib/python3.11/dist-packages   # where a system pip install would put it
rm -rf "$site" && mkdir -p "$site" && cp -a "$WORK/site/." "$site/" && rm -rf "$site/bin"
sed '1s|.*|#!/usr/bin/python3|' "$WORK/site/bin/edgesdk" > "$ROOT/usr/local/bin/edgesdk"
chmod +x "$ROOT/usr/local/bin/edgesdk"

step "host: waiting for the exports"
wait "$exporter" || { exporter=; tail -20 "$WORK/export.log"; die "host export (see $WORK/export.log)"; }
exporter=
sed 's|^|  |' "$WORK/export.log"
step "host: record outputs and clip decisions"
python "$HERE/run_samples.py" "$WORK/bundles" "$WORK/x86_64" >/dev/null
python "$HERE/decisions.py" "$WORK/bundles/kws" "$REPO/examples/kws/clips" "$WORK/x86_64/decisions.json"

step "x86-64 device install: edgesdk[runtime] from the wheel in a fresh venv, every runtime verb"
"$REPO/ci/x86_device_install.sh" "$wheel" "$WORK/bundles" "$REPO/examples/kws/clips" "$WORK/x86-venv" \
    || die "the x86-64 device install"

step "copy bundles, clips, the Jetson app and scripts into the userland"
rm -rf "$ROOT/test" && mkdir -p "$ROOT/test/examples/jetson"
cp -a "$WORK/bundles" "$REPO/examples/kws/clips" "$HERE/run_samples.py" "$HERE/decisions.py" \
    "$HERE/fake_jetson.py" "$HERE/check_jetson.py" "$REPO/ci/runtime_verbs.sh" "$ROOT/test/"
# The app as a device user copies it: the script alone (it imports nothing but edgesdk).
cp "$REPO/examples/jetson/kws_jetson.py" "$ROOT/test/examples/jetson/"
mkdir -p "$ROOT/proc"
mount -t proc proc "$ROOT/proc" || die "mount /proc in the userland"
in_arm() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

step "aarch64: no torch anywhere"
[ "$(in_arm python3 -c 'import platform; print(platform.machine())')" = aarch64 ] || die "userland is not aarch64"
if in_arm python3 -c 'import torch' 2>/dev/null; then die "import torch works in the userland"; fi
in_arm python3 -c '
import sys, edgesdk, edgesdk.runtime, edgesdk.devices, edgesdk.profiler, edgesdk.cli
assert "torch" not in sys.modules, "importing edgesdk imported torch"
print("import torch fails; edgesdk", edgesdk.__version__, "runtime/devices/profiler/cli import without torch")'

step "aarch64: every runtime verb without torch; export refused (exit 5)"
in_arm bash /test/runtime_verbs.sh /test/bundles /test/clips measured:emulated-aarch64 \
    || die "runtime verbs in the userland"

step "aarch64: edgesdk validate, each bundle on each backend"
for bundle in "$WORK"/bundles/*/; do
    name=$(basename "$bundle")
    for backend in $(python "$HERE/run_samples.py" --backends "$bundle"); do
        if ! in_arm edgesdk validate "/test/bundles/$name" --backend "$backend" 2>&1 | sed "s|^|  |"; then
            die "edgesdk validate $name --backend $backend"
        fi
    done
done

step "aarch64: run the samples, stream the 12 clips"
in_arm python3 /test/run_samples.py /test/bundles /test/aarch64 >/dev/null || die "run_samples.py in the userland"
in_arm python3 /test/decisions.py /test/bundles/kws /test/clips /test/aarch64/decisions.json || die "edgesdk run --wav in the userland"
in_arm python3 -c 'import sys, edgesdk.runtime; assert "torch" not in sys.modules' || die "torch imported"
cp -a "$ROOT/test/aarch64" "$WORK/aarch64"

step "aarch64: the Jetson app and edgesdk devices on a fake Orin Nano tree"
in_arm python3 /test/fake_jetson.py /test/jetson-root || die "writing the fake Jetson tree"
in_arm python3 /test/check_jetson.py /test/jetson-root /test/bundles/kws /test/clips /test/examples/jetson/kws_jetson.py \
    || die "the Jetson app or edgesdk devices on the fake Orin Nano tree"

step "compare aarch64 with x86-64"
python - "$WORK/x86_64/decisions.json" "$WORK/aarch64/decisions.json" <<'PY' || die "clip decisions differ"
import json, sys
host, arm = (json.load(open(p)) for p in sys.argv[1:])
bad = [k for k in host if host[k] != arm.get(k)]
for k in sorted(host):
    print(f"{'ok  ' if k not in bad else 'FAIL'} {k:26s} x86-64 {host[k][0]:8s} @{host[k][1]:4d}  aarch64 {arm.get(k, ['-', 0])[0]:8s} @{arm.get(k, ['-', 0])[1]:4d}")
print(f"clip decisions: {len(host) - len(bad)}/{len(host)} identical (label, frames used, early exit)")
sys.exit(1 if bad else 0)
PY
python "$HERE/compare.py" "$WORK/bundles" "$WORK/x86_64" "$WORK/aarch64" || die "aarch64 outputs differ from x86-64 beyond tolerance"
step "test-arm64 passed"
