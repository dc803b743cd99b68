"""What can be checked of the TPU path without a TPU: finding the TPU without TensorFlow, the
runtime variables a v5e needs, the one-line errors, and the README's TPU commands against the
memory planner. (The step itself runs on two logical CPUs in test_replicas.py.)"""
import functools
import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

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


# ---- the free TPUs as they are (December 2026): Python 3.13, libtpu's places, MFU, memory ----------------

def test_python_313_is_refused_first_with_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"no wheel for Python 3\.13.*'Change runtime version'.*26\.07"):
        train.check_tpu_build({"tensorflow-tpu"}, python=(3, 13))  # even with the TPU build (it cannot be)
    train.check_tpu_build({"tensorflow-tpu"}, python=(3, 12))
    monkeypatch.setattr(train, "check_tpu_build", functools.partial(train.check_tpu_build, python=(3, 13)))
    with pytest.raises(SystemExit) as exit:
        train.main(["--tpu", "--out", str(tmp_path)])
    assert str(exit.value.code).startswith("error: --tpu: tensorflow-tpu 2.19.1 has no wheel for Python 3.13")
    assert not os.listdir(tmp_path)


def test_pjrt_variables_respect_the_users_own():
    before = dict(os.environ)
    lib = "/site-packages/libtpu/libtpu.so"
    mine = {"TF_XLA_FLAGS": "--xla_dump_to=/tmp/x --tf_mlir_enable_mlir_bridge=false"}
    variables = train.tpu_runtime_variables("v5e", lib, mine)
    flags = variables["TF_XLA_FLAGS"].split()
    assert flags[:2] == mine["TF_XLA_FLAGS"].split()  # the user's flags first, and their bridge setting wins
    assert "--tf_mlir_enable_merge_control_flow_pass=true" in flags and len(flags) == 4
    assert train.tpu_runtime_variables("v5e", lib, variables) == variables  # once, not twice
    assert train.tpu_runtime_variables("v4", lib, {}) == {}  # v4: the built-in runtime
    asked = train.tpu_runtime_variables("v4", lib, {"PJRT_DEVICE": "TPU"})  # unless PJRT is asked for
    assert asked["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] == lib and asked["NEXT_PLUGGABLE_DEVICE_USE_C_API"] == "true"
    own = train.tpu_runtime_variables("v5e", lib, {"TF_PLUGGABLE_DEVICE_LIBRARY_PATH": "/mine/libtpu.so"})
    assert own["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] == "/mine/libtpu.so"
    assert dict(os.environ) == before


def test_libtpu_found_in_the_package_or_through_tpu_library_path(tmp_path, monkeypatch):
    before = dict(os.environ)
    assert train.libtpu_path({}) == ("/lib/libtpu.so" if os.path.isfile("/lib/libtpu.so") else "")
    library = tmp_path / "image" / "libtpu.so"  # a Cloud TPU image names its copy in TPU_LIBRARY_PATH
    library.parent.mkdir()
    library.write_bytes(b"")
    assert train.libtpu_path({"TPU_LIBRARY_PATH": str(library)}) == str(library)
    assert train.libtpu_path({"TPU_LIBRARY_PATH": str(tmp_path / "missing.so")}) in ("", "/lib/libtpu.so")
    package = tmp_path / "site" / "libtpu"  # the pip package (requirements-tpu.txt's libtpu) comes first
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "libtpu.so").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert train.libtpu_path({"TPU_LIBRARY_PATH": str(library)}) == str(package / "libtpu.so")
    assert dict(os.environ) == before


def test_mfu_on_a_tpu_is_against_the_published_peak(monkeypatch, capsys):
    # A TPU whose measurement comes out at a tenth of the published peak (a loaded host, a small
    # product): MFU still divides by the published figure, and nothing warns
    calls = []
    monkeypatch.setattr(train, "measure_peak_flops", lambda *args, **kwargs: calls.append(kwargs) or 19.7e12)
    train.peak_flops.cache_clear()  # measured once per process and device: not from an earlier test
    peak, text = train.peak_flops("v5e", "/cpu:0", None)
    assert peak == train.TPU_PEAK_FLOPS["v5e"] == 197e12
    assert text == "197 TFLOP/s per replica (published for TPU v5e; 20 measured)"
    assert calls == [{"n": 8192, "products": 20}]  # sized for a TPU
    assert capsys.readouterr().out == ""
    peak, text = train.peak_flops("", "/cpu:0", None)  # no TPU: the measurement is the peak
    assert peak == 19.7e12 and text.endswith("(measured)")


def test_measured_memory_beside_the_plan(monkeypatch):
    asked = []
    fake = lambda device: asked.append(device) or {"current": 0, "peak": 3 * train.GIB}  # noqa: E731
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", fake)
    line = train.measured_memory("/job:localhost/replica:0/task:0/device:TPU:0", 4.5 * train.GIB)
    assert asked == ["TPU:0"] and line == "; memory: 3.00 GiB at one replica's peak, 4.50 planned"

    def raises(device):  # what the documentation says a CPU does
        raise ValueError("get_memory_info is not supported on CPU")
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", raises)
    assert train.measured_memory("/device:CPU:0", 1.0) == ""


def test_tpu_never_tokenizes(monkeypatch, tmp_path):
    (tmp_path / "a.txt").write_text("some text " * 100)
    monkeypatch.setattr(train, "check_tpu_build", lambda: None)  # as on a TPU VM with the TPU build
    with pytest.raises(SystemExit) as exit:
        train.main(["--tpu", "--data", str(tmp_path / "*.txt"), "--out", str(tmp_path / "out")])
    line = str(exit.value.code)
    assert line.startswith(f"error: --tpu trains on prepared data only, and {tmp_path / '*.txt'} is not") and \
        f"python data.py --input {tmp_path / '*.txt'} --output DIR --vocab 4096, then --data DIR" in line
    assert os.listdir(tmp_path / "out") == []  # before any work (the lock taken, and given back): no TPU touched


@pytest.mark.slow  # five processes, each importing TensorFlow
def test_smoke_script_on_a_cpu(tmp_path):
    # tests/tpu_smoke.sh --cpu: the TPU smoke script's steps, on this CPU, so its plumbing does not
    # run for the first time on a TPU
    done = subprocess.run(["bash", os.path.join(ROOT, "tests", "tpu_smoke.sh"), "--cpu"], capture_output=True,
                          text=True, env={**os.environ, "SMOKE_OUT": str(tmp_path / "smoke")}, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout[done.stdout.index("==== summary"):]
    assert "resumed from" in summary and "at step 20" in summary and "step     30 | val loss" in summary
    assert "1 replica(s) on" in summary and "first call: 10 steps" in summary and "tok/s" in summary
    assert summary.splitlines()[-1] == "smoke test passed"
    sample = summary.split("sample:")[1].splitlines()[0].strip()
    assert sample and "I0000" not in sample
