#!/usr/bin/env bash
# Every runtime verb of an installed, torch-free edgesdk: validate, run, inspect, devices, profile;
# and `edgesdk export` refused with one line naming the extra (exit 5). Runs wherever `edgesdk`
# and `python3` on PATH are the device install: the x86-64 venv and the aarch64 userland alike.
# Usage: runtime_verbs.sh BUNDLES_DIR CLIPS_DIR LATENCY_PROVENANCE
#   LATENCY_PROVENANCE: what `edgesdk profile` must label its latency with here
#   (measured:perf_counter natively, measured:emulated-aarch64 under qemu-user).
set -euo pipefail
BUNDLES=${1:?usage: runtime_verbs.sh BUNDLES_DIR CLIPS_DIR LATENCY_PROVENANCE}
CLIPS=${2:?clips dir}
LATENCY=${3:?expected latency provenance}
where=$(python3 -c 'import platform; print(platform.machine())')
die() { echo "runtime verbs ($where): FAIL: $*" >&2; exit 1; }
say() { echo "  [$where] $*"; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if python3 -c 'import torch' 2>/dev/null; then die "torch is importable: not a runtime-only install"; fi
python3 -c 'import sys, edgesdk.cli, edgesdk.runtime, edgesdk.devices, edgesdk.profiler
assert "torch" not in sys.modules, "importing edgesdk imported torch"' || die "edgesdk imports torch"
say "no torch: import torch fails, edgesdk imports without it"

edgesdk validate "$BUNDLES/kws" > "$scratch/validate.txt" 2>&1 || { cat "$scratch/validate.txt"; die "edgesdk validate kws"; }
say "validate kws: $(grep -c '✓' "$scratch/validate.txt") outputs checked, exit 0"

expected=$(python3 -c 'import json, sys; print(next(c["label"] for c in json.load(open(sys.argv[1])) if c["file"] == "stop.wav"))' "$CLIPS/clips.json")
edgesdk run "$BUNDLES/kws" --wav "$CLIPS/stop.wav" --stream --early-exit 0.9 --json > "$scratch/run.json" 2> "$scratch/run.err" \
    || { cat "$scratch/run.err"; die "edgesdk run --wav"; }
label=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["decided_label"])' "$scratch/run.json")
[ "$label" = "$expected" ] || die "edgesdk run stop.wav decided $label, the clip is $expected"
say "run stop.wav --stream: decided '$label' (the clip's label)"

edgesdk inspect "$BUNDLES/kws" > "$scratch/inspect.txt" 2>&1 || die "edgesdk inspect"
grep -q lmuformer "$scratch/inspect.txt" || die "edgesdk inspect does not name the family"
say "inspect kws: $(wc -l < "$scratch/inspect.txt") lines, names the family"

edgesdk devices > "$scratch/devices.txt" 2>&1 || die "edgesdk devices"
grep -q '^process' "$scratch/devices.txt" || die "edgesdk devices does not report the process's ISA"
say "devices: $(grep -E '^(device|process)' "$scratch/devices.txt" | tr -s ' ' | paste -sd ';' -)"
grep 'host disagrees' "$scratch/devices.txt" | sed "s|^ *|  [$where]   |" || true

edgesdk profile "$BUNDLES/lmuformer-tiny" --runs 10 --warmup 2 --json > "$scratch/profile.json" 2> "$scratch/profile.err" \
    || { cat "$scratch/profile.err"; die "edgesdk profile"; }
python3 - "$scratch/profile.json" "$LATENCY" <<'PY' || die "edgesdk profile latency label"
import json, sys
result, expected = json.load(open(sys.argv[1])), sys.argv[2]
latency = result["latency"]
assert latency["provenance"] == expected, f"latency labelled {latency['provenance']}, expected {expected}"
emulated = expected.startswith("measured:emulated-")
assert latency["emulated"] is emulated, latency["emulated"]
warned = any(w.startswith("timings under emulation are not device timings") for w in result["warnings"])
assert warned is emulated, result["warnings"]
print(f"  profile lmuformer-tiny: p50 {latency['p50_ms']:.3f} ms labelled {latency['provenance']}"
      + (" + warning 'timings under emulation are not device timings'" if warned else ""))
PY

set +e
message=$(edgesdk export lmuformer --preset tiny -o "$scratch/export" 2>&1); code=$?
set -e
[ "$code" = 5 ] && [ "$(printf '%s\n' "$message" | wc -l)" = 1 ] && [[ $message == *"edgesdk[export]"* ]] \
    || die "edgesdk export without torch: exit $code, '$message' (want exit 5, one line naming edgesdk[export])"
say "export refused, exit 5: $message"
