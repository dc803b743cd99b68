"""What can be checked of the TPU path without a TPU: finding the TPU without TensorFlow, the
runtime variables a v5e needs, the one-line errors, and the README's TPU commands against the
memory planner. (The step itself runs on two logical CPUs in test_replicas.py.)"""
import json
import os
import re
import subprocess
import sys

import pytest

import gpt2
import train
from conftest import ROOT


def fake_pci(tmp_path, devices):
    """A /sys/bus/pci/devices look-alike: one folder per (vendor, device) pair."""
    for i, (vendor, device) in enumerate(devices):
        folder = tmp_path / f"0000:00:0{i}.0"
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device + "\n")
    return str(tmp_path)


def test_tpu_type_from_pci_ids_then_environment(tmp_path):
    network_card = ("0x1af4", "0x1000")
    assert train.tpu_type(fake_pci(tmp_path / "a", [network_card]), {}) == ""
    (tmp_path / "d").mkdir()
    assert train.tpu_type(fake_pci(tmp_path / "b", [network_card, ("0x1ae0", "0x0063")]), {}) == "v5e"
    # the PCI id is the hardware's word; an environment variable may be stale (Kaggle's images
    # once set v3-8 whatever the chip)
    assert train.tpu_type(fake_pci(tmp_path / "c", [("0x1ae0", "0x0027")]), {"TPU_ACCELERATOR_TYPE": "v2-8"}) == "v2"
    assert train.tpu_type(str(tmp_path / "d"), {"TPU_ACCELERATOR_TYPE": "v5litepod-8"}) == "v5e"


def test_pjrt_variables_only_for_v5e_and_later_with_libtpu():
    variables = train.tpu_runtime_variables("v5e", "/site-packages/libtpu/libtpu.so")
    assert variables["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] == "/site-packages/libtpu/libtpu.so"
    assert variables["NEXT_PLUGGABLE_DEVICE_USE_C_API"] == "true" and variables["PJRT_DEVICE"] == "TPU"
    assert train.tpu_runtime_variables("v3", "/site-packages/libtpu/libtpu.so") == {}  # the older runtime
    assert train.tpu_runtime_variables("v5e", "") == {}  # no libtpu: nothing to point at
    assert train.tpu_runtime_variables("", "") == {}  # this machine
    assert "TF_PLUGGABLE_DEVICE_LIBRARY_PATH" not in os.environ


def test_tpu_build_check():
    train.check_tpu_build({"tensorflow-tpu"})  # the TPU build alone: no error
    with pytest.raises(ValueError, match="not installed"):
        train.check_tpu_build({"tensorflow"})
    with pytest.raises(ValueError, match="installed together"):
        train.check_tpu_build({"tensorflow-tpu", "tensorflow-cpu"})
    with pytest.raises(ValueError):
        train.check_tpu_build()  # this machine has the CPU build only


@pytest.mark.parametrize("flags, message", [
    (["--tpu"], "error: --tpu: TensorFlow's TPU build (tensorflow-tpu) is not installed"),
    (["--tpu", "--dry_run"], "error: --tpu: TensorFlow's TPU build (tensorflow-tpu) is not installed"),
])
def test_tpu_flag_mistakes_get_one_line(flags, message, tmp_path):
    with pytest.raises(SystemExit) as exit:
        train.main(flags + ["--out", str(tmp_path)])
    assert str(exit.value.code).startswith(message) and "\n" not in str(exit.value.code)
    assert not os.listdir(tmp_path)  # refused before any work


def test_no_tpu_found_is_one_line():
    # The TPU build's check passes on a TPU VM; what follows, on a machine without a TPU, is
    # TensorFlow's "No OpKernel was registered to support Op 'ConfigureDistributedTPU'".
    code = "import train\ntry:\n    train.connect_tpu()\nexcept ValueError as e:\n    print(e)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 1 and lines[0].startswith("--tpu: TensorFlow found no TPU (it sees: CPU")


@pytest.mark.parametrize("document", ["README.md", "notebooks/04_training.ipynb"])
def test_documented_tpu_and_gpu_commands_fit_the_planner(document):
    # Each documented 124M command line ends with a comment naming its device; the planner
    # must say it fits that device's memory per replica. README has all four; notebook 4 the TPUs.
    devices = {"Colab v5e-1": (1, 16), "Kaggle v5e-8": (8, 16), "Kaggle T4 x2": (2, 16), "Colab T4": (1, 16)}
    text = open(os.path.join(ROOT, document), encoding="utf-8").read()
    if document.endswith(".ipynb"):  # the cells' sources, as text
        text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    checked = []
    for device, (replicas, memory_gb) in devices.items():
        line = next((line for line in text.splitlines() if line.rstrip().endswith("# " + device)), None)
        if line is None:
            continue
        batch = int(re.search(r"--batch_size (\d+)", line).group(1))
        accum = re.search(r"--grad_accum (\d+)", line)
        precision = "bfloat16" if "v5e" in device else "float32"  # a T4 has no bfloat16
        config = train.TrainConfig(batch_size=batch, precision=precision, grad_accum=int(accum.group(1)) if accum else 1,
                                   recompute="--recompute" in line)
        planned = sum(train.memory_plan(gpt2.PRESETS["124M"], config, replicas=replicas).values())
        assert planned <= memory_gb * train.GIB, (device, planned / train.GIB)
        checked.append(device)
    assert len(checked) == (4 if document == "README.md" else 2), checked
