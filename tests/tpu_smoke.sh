#!/usr/bin/env bash
# A first run on a fresh TPU runtime, about 10 minutes, from the repository's folder:
#   bash tests/tpu_smoke.sh          on a TPU VM (Colab's v5e-1, Kaggle's v5e-8, a TPU Research Cloud VM)
#   bash tests/tpu_smoke.sh --cpu    the same steps on a CPU, small (the test suite runs this)
# It installs nothing (pip install -r requirements-tpu.txt first, on Python 3.12 or older). Each step
# is its own process, as on a TPU only one process at a time may hold the TPU: data.py prepares a
# corpus, train.py trains `tiny` 20 steps and resumes it to 30, sample.py samples from it after
# train.py has exited, and train.py trains 124M in bfloat16 for 20 steps with the README's batch for
# the chips found (on a CPU: `tiny` again). It ends with a summary to paste into an issue.
set -uo pipefail
cd "$(dirname "$0")/.."
cpu=false; [ "${1:-}" = "--cpu" ] && cpu=true
out=${SMOKE_OUT:-/tmp/gpt2-tf-smoke}
rm -rf "$out" && mkdir -p "$out/texts"
step() { echo; echo "==== $*"; }
fail() { echo "smoke test failed: $*"; exit 1; }

step "Python, and the packages that matter (read from pip's records: TensorFlow is not imported here)"
python -c 'import sys; print("Python", sys.version.split()[0])'
python -c 'import sys; sys.exit(sys.version_info >= (3, 13))' || $cpu ||
    fail "tensorflow-tpu 2.19.1 has no wheel for this Python: on Colab, 'Change runtime version' to 26.07 (README)"
python - <<'EOF'
import importlib.metadata as metadata
for name in ["tensorflow", "tensorflow-cpu", "tensorflow-tpu", "libtpu", "numpy", "protobuf"]:
    try:
        print(f"{name:16s}", metadata.version(name))
    except metadata.PackageNotFoundError:
        print(f"{name:16s}", "-")
EOF

if $cpu; then  # small and quick: tiny with 1 layer, a context of 64, a BPE of 300
    tpu=--no-tpu; files=20; vocab=300; small=(--n_layer 1 --n_ctx 64 --batch_size 8); big=(--config tiny "${small[@]}")
else
    tpu=--tpu; files=400; vocab=4096; small=()
    chips=$(grep -l 0x1ae0 /sys/bus/pci/devices/*/vendor 2>/dev/null | wc -l)  # Google's PCI vendor id: one per chip
    if [ "$chips" -ge 8 ]; then batch=(--batch_size 64 --grad_accum 2); else batch=(--batch_size 32 --grad_accum 8); fi
    big=(--config 124M --precision bfloat16 "${batch[@]}")
fi
loop=(--steps_per_loop 10 --log_interval 10 --eval_interval 20 --eval_steps 2 --save_interval 10 --sample_length 0)

step "data.py: $files files of Python's standard library, a BPE of $vocab (in its own process)"
python - "$out/texts" "$files" <<'EOF'
import glob, os, shutil, sys, sysconfig
pattern = os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py")
files = sorted(f for f in glob.glob(pattern, recursive=True) if "-packages" not in f)[:int(sys.argv[2])]
for i, f in enumerate(files):
    shutil.copy(f, os.path.join(sys.argv[1], f"{i}.py"))
EOF
python data.py --input "$out/texts/*.py" --output "$out/data" --vocab $vocab --val_fraction 0.1 > "$out/data.log" ||
    fail "data.py: $(tail -1 "$out/data.log")"

step "train.py: tiny, 20 steps"
python train.py $tpu --config tiny "${small[@]}" --data "$out/data" --out "$out/tiny" --steps 20 "${loop[@]}" 2>&1 | tee "$out/tiny.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "train.py, tiny"
step "train.py: the same command to 30 steps, which resumes from step 20"
python train.py $tpu --config tiny "${small[@]}" --data "$out/data" --out "$out/tiny" --steps 30 "${loop[@]}" 2>&1 | tee "$out/resumed.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "train.py, resumed"
step "sample.py, after train.py has exited"
python sample.py --model "$out/tiny" --length 40 --seed 0 > "$out/sample.log" 2> "$out/sample.err" ||
    fail "sample.py: $(tail -1 "$out/sample.err")"
cat "$out/sample.log"
step "train.py: ${big[*]}, 20 steps"
python train.py $tpu "${big[@]}" --data "$out/data" --out "$out/big" --steps 20 "${loop[@]}" 2>&1 | tee "$out/big.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "train.py, ${big[*]}"

step "summary (paste it into an issue)"
last() { grep "$1" "$2" | tail -1; }
echo "run:        ${big[*]}"
echo "devices:    $(last 'replica(s) on' "$out/big.log")"
echo "compiling:  $(last 'first call' "$out/big.log")"
echo "speed:      $(last '^step .* tok/s' "$out/big.log")"
echo "resumed:    $(last 'resumed from' "$out/resumed.log"); $(last 'val loss' "$out/resumed.log")"
echo "sample:     $(sed -n '2,$p' "$out/sample.log" | grep -m1 '[^[:space:]]' | cut -c1-70)"
echo "smoke test passed"
