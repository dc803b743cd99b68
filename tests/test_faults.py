"""Nothing lost, nothing silent: what a careless or unlucky user does to a run, on a tiny run.

Two processes on one OUT, a rerun with other settings, an unreadable or cut-off checkpoint,
corrupt inputs, storage faults, values out of range, SIGTERM and Ctrl-C. Each case ends in one
line (no traceback), in a non-zero exit where the run did not do what was asked, and with nothing
lost beyond the last checkpoint."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import data
import gpt2
import sample
import train
from conftest import ROOT

TINY = ["--config", "tiny", "--n_ctx", "32", "--n_embd", "32", "--n_head", "2", "--n_layer", "1", "--batch_size", "4",
        "--steps", "4", "--steps_per_loop", "2", "--log_interval", "2", "--eval_interval", "4", "--eval_steps", "1",
        "--save_interval", "2", "--warmup_steps", "1", "--sample_length", "0"]


@pytest.fixture(scope="module")
def corpus(stdlib_corpus):
    return stdlib_corpus


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """A run of 4 steps, checkpoints at 2 and 4, to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "out"
    train.main(TINY + ["--data", corpus, "--out", str(out)])
    return out


@pytest.fixture
def cli(capsys):
    """train.py's command line in this process: (exit code, what it printed, its error line)."""
    def run(*args):
        try:
            train.main(list(args))
            code, line = 0, ""
        except SystemExit as exit:  # ours: sys.exit("error: ..."); argparse's and Ctrl-C's: a number
            code, line = (1, exit.code) if isinstance(exit.code, str) else (exit.code, "")
        return code, capsys.readouterr().out, line
    return run


def copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "out")
    return tmp_path / "out"


# ---- one writer per OUT -------------------------------------------------------------------------

def test_a_second_run_on_a_live_out_refuses(corpus, tmp_path, cli):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # the other train.py
    try:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "train.lock").write_text(f"{other.pid} {socket.gethostname()}")
        code, out, line = cli(*TINY, "--data", corpus, "--out", str(tmp_path / "out"))
        assert code != 0 and line.startswith(f"error: {tmp_path / 'out'} is in use by train.py, process {other.pid}")
        assert sorted(os.listdir(tmp_path / "out")) == ["train.lock"]  # nothing else touched
    finally:
        other.kill()
        other.wait()
    code, out, line = cli(*TINY, "--data", corpus, "--out", str(tmp_path / "out"))  # now a stale lock
    assert code == 0 and f"note: process {other.pid}, which held" in out and "is gone: taking it over" in out
    assert not (tmp_path / "out" / "train.lock").exists()  # released at the end


def test_the_lock_is_released_when_a_run_fails(corpus, tmp_path, cli):
    code, _, line = cli(*TINY, "--data", corpus, "--out", str(tmp_path), "--learning_rate", "1e30", "--optimizer",
                        "adam", "--steps", "8")
    assert code != 0 and "loss is nan" in line
    assert not (tmp_path / "train.lock").exists()


# ---- a rerun is checked against its run -----------------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--seed", "1"), ("--n_head", "4"), ("--batch_size", "8"),
                                         ("--data", "stdlib"), ("--optimizer", "adam")])
def test_a_rerun_with_another_defining_setting_refuses(finished, tmp_path, flag, value, corpus, cli):
    out = copy(finished, tmp_path)
    record = (out / "config.json").read_text()
    args = [a for a in TINY + ["--data", corpus] if a] + ["--out", str(out), "--steps", "6"]
    i = args.index(flag) if flag in args else None
    args = args[:i] + args[i + 2:] if i is not None else args
    code, _, line = cli(*args, flag, value)
    assert code != 0 and line.startswith(f"error: {flag} ") and f"but the run in {out} has" in line, line
    assert (out / "config.json").read_text() == record  # the record kept
    assert not (out / "data").exists() and not (out / "train.lock").exists()  # nothing re-tokenized, nothing held


def test_a_rerun_may_change_steps_and_intervals(finished, tmp_path, corpus, cli):
    out = copy(finished, tmp_path)
    record = (out / "config.json").read_text()
    code, text, _ = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "6", "--log_interval", "1",
                        "--recompute")
    assert code == 0 and "at step 4" in text and json.loads(record)["steps"] == 4
    assert (out / "config.json").read_text() == record  # config.json is the run's first record


# ---- checkpoint state ---------------------------------------------------------------------------

def test_an_unreadable_checkpoint_state_file_is_no_restart(finished, tmp_path, corpus, cli):
    out = copy(finished, tmp_path)
    for garbage in [b"model_checkpoint_path: {{{ not a state", b"\x00\xff\xfe binary"]:  # TensorFlow: ignored; an error
        (out / "checkpoints" / "checkpoint").write_bytes(garbage)
        code, text, line = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "4")
        assert code == 0 and f"resumed from {out / 'checkpoints' / 'ckpt-4'} at step 4" in text, line


def test_a_cut_off_latest_checkpoint_names_the_one_before(finished, tmp_path, corpus, cli):
    out = copy(finished, tmp_path)
    cut = next((out / "checkpoints").glob("ckpt-4.data-*"))
    cut.write_bytes(cut.read_bytes()[:100])
    code, _, line = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "6")
    assert code != 0 and "unreadable" in line and f"{out / 'checkpoints' / 'ckpt-2'}, the one before" in line
    for f in (out / "checkpoints").glob("ckpt-4.*"):  # what the line says to do
        f.unlink()
    code, text, _ = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "6")
    assert code == 0 and "at step 2" in text


# ---- inputs checked when opened ---------------------------------------------------------------------

def test_a_cut_off_shard_is_refused(corpus, tmp_path):
    shutil.copytree(corpus, tmp_path / "d")
    shard = tmp_path / "d" / "train_000000.bin"
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"the train shards of .* hold [\d,]+ tokens, not data.json's [\d,]+"):
        data.dataset(str(tmp_path / "d"), "train", 4, 32)


def test_ids_beyond_the_vocabulary_in_held_out_data_stop_the_run(corpus, tmp_path, cli):
    shutil.copytree(corpus, tmp_path / "d")
    for shard in (tmp_path / "d").glob("val_*.bin"):  # every held-out shard, whichever the evaluation reads
        ids = np.fromfile(shard, dtype="<u2")
        ids[::50] = 60000  # a corrupt shard: ids far beyond the 300 of the vocabulary
        ids.tofile(shard)
    code, _, line = cli(*TINY, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "out"))
    assert code != 0 and line.startswith("error: the val split at step 4 read token ids >= n_vocab")
    for record in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines():
        assert all(np.isfinite(v) for v in json.loads(record).values())  # valid JSON: no NaN


def test_a_vocabulary_missing_a_merge_is_refused(corpus, tmp_path):
    shutil.copytree(corpus, tmp_path / "v")
    lines = (tmp_path / "v" / "vocab.bpe").read_text().splitlines(True)
    (tmp_path / "v" / "vocab.bpe").write_text("".join(lines[:20] + lines[21:]))
    with pytest.raises(ValueError, match=r"42 merges in vocab.bpe; 300 ids need 43"):
        data.Encoder.load(str(tmp_path / "v"))


def test_weights_beyond_hparams_are_refused(tmp_path):
    two = gpt2.GPT2(gpt2.HParams(n_vocab=16, n_ctx=8, n_embd=8, n_head=2, n_layer=2))
    gpt2.save(two, str(tmp_path))
    gpt2.save_hparams(gpt2.HParams(n_vocab=16, n_ctx=8, n_embd=8, n_head=2, n_layer=1), str(tmp_path))
    with pytest.raises(ValueError, match=r"holds model/h1/attn/c_attn/b, which hparams.json's shape has no place for"):
        gpt2.load(str(tmp_path))


def test_data_py_leaves_its_output_out_of_its_input(tmp_path):
    (tmp_path / "texts").mkdir()
    for name, file in zip("abc", data.corpus_files("stdlib")):
        (tmp_path / "texts" / f"{name}.txt").write_text(data.read_text(file))
    pattern, out = str(tmp_path / "texts" / "*"), str(tmp_path / "texts" / "prepared")
    first = data.prepare(pattern, out, 270, val_fraction=0.0, processes=1)
    again = data.prepare(pattern, out, 270, val_fraction=0.0, processes=1)  # the glob now matches prepared/ too
    assert again["train_documents"] == first["train_documents"] == 3 and again == first


# ---- storage faults: one line, and the next run resumes -----------------------------------------------

def test_a_full_disk_at_the_export_is_one_line_and_resumable(finished, tmp_path, corpus, monkeypatch, cli):
    out = copy(finished, tmp_path)

    def full(*args):
        raise tf.errors.ResourceExhaustedError(None, None, f"{out}/model.ckpt.data-00000-of-00001; No space left on device")
    monkeypatch.setattr(gpt2, "save", full)
    code, _, line = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "6")
    assert code != 0 and line == f"error: {out}/model.ckpt.data-00000-of-00001; No space left on device"
    monkeypatch.undo()
    code, text, _ = cli(*TINY, "--data", corpus, "--out", str(out), "--steps", "6")
    assert code == 0 and "at step 6" in text and gpt2.load(str(out)).hparams.n_layer == 1


def test_a_full_disk_at_a_checkpoint_is_one_line(corpus, tmp_path):
    # A real write failure: files may grow to 2 MB (RLIMIT_FSIZE), and the first checkpoint is larger
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))\n"
            "import train\n"
            f"train.main({json.dumps(TINY + ['--data', corpus, '--out', str(tmp_path / 'out'), '--n_embd', '512'])})")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert done.returncode != 0 and len(errors) == 1 and errors[0].startswith("error: "), done.stderr[-2000:]


def test_path_faults_are_one_line(corpus, tmp_path, cli):
    (tmp_path / "file").write_text("not a directory")
    code, _, line = cli(*TINY, "--data", corpus, "--out", str(tmp_path / "file"))
    assert code != 0 and line.startswith("error: ") and "\n" not in line
    shutil.copytree(corpus, tmp_path / "d")
    (tmp_path / "d" / "val_000000.bin").unlink()  # a shard deleted
    code, _, line = cli(*TINY, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"))
    assert code != 0 and line.startswith("error: ") and "val_000000.bin" in line


# ---- values ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, message", [({"n_layer": "2"}, "--config n_layer '2': must be int"),
                                             ({"n_layer": True}, "--config n_layer True: must be int"),
                                             ({"learning_rate": "fast"}, "--config learning_rate 'fast': must be float"),
                                             ({"recompute": 1}, "--config recompute 1: must be bool")])
def test_config_fields_of_the_wrong_type(tmp_path, fields, message, cli):
    (tmp_path / "c.json").write_text(json.dumps({"preset": "tiny", **fields}))
    code, _, line = cli("--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "o"))
    assert code != 0 and line == f"error: {message}"


@pytest.mark.parametrize("flags, message", [(["--n_ctx", "1"], "--n_ctx 1: must be at least 2"),
                                            (["--out", ""], "--out '': must be a folder"),
                                            (["--grad_clip", "nan"], "--grad_clip nan: must be finite"),
                                            (["--learning_rate", "inf"], "--learning_rate inf: must be finite"),
                                            (["--weight_decay=-inf"], "--weight_decay -inf: must be finite"),
                                            (["--seed", str(2 ** 40)], f"--seed {2 ** 40}: must be in [0, 2^31)")])
def test_values_out_of_range(tmp_path, flags, message, cli):
    code, _, line = cli(*flags, "--out", str(tmp_path / "o") if flags[0] != "--out" else "")
    assert code != 0 and line.startswith(f"error: {message}"), line
    assert not (tmp_path / "o").exists()


def test_a_tiny_temperature_is_greedy_and_a_huge_length_refused(tmp_path, corpus):
    model = gpt2.GPT2(gpt2.HParams(n_vocab=300, n_ctx=16, n_embd=16, n_head=2, n_layer=1), seed=1)
    greedy = sample.generate(model, [[1, 2, 3]], 8, temperature=0)
    assert np.array_equal(sample.generate(model, [[1, 2, 3]], 8, temperature=1e-40, seed=0), greedy)
    gpt2.save(model, str(tmp_path))
    data.Encoder.load(corpus).save(str(tmp_path))
    with pytest.raises(SystemExit) as exit:
        sample.main(["--model", str(tmp_path), "--length", "100000000"])
    assert str(exit.value.code) == "error: --length 100000000: at most 16 x n_ctx (256) in one sample"


# ---- signals ---------------------------------------------------------------------------------------------

def start(args, **kwargs):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}, **kwargs)


def wait_for(process, text, seconds=120):
    """Reads the process's output until a line holds text; the lines read."""
    lines, end = [], time.time() + seconds
    while time.time() < end:
        line = process.stdout.readline()
        lines.append(line)
        if text in line or not line:
            return lines
    raise AssertionError(f"no {text!r} in {lines}")


def test_sigterm_saves_like_ctrl_c_and_the_rerun_resumes(corpus, tmp_path, cli):
    args = ["train.py", *TINY, "--data", corpus, "--out", str(tmp_path), "--steps", "100000", "--save_interval", "100000"]
    process = start(args)
    wait_for(process, "first call")
    process.send_signal(signal.SIGTERM)  # how a cloud announces a preemption
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted: saved step" in out and "Traceback" not in err, err[-2000:]
    step = int(out.split("interrupted: saved step ")[1].split()[0])
    assert 0 < step < 100000
    code, text, _ = cli(*TINY, "--data", corpus, "--out", str(tmp_path), "--steps", str(step + 2),
                        "--save_interval", "100000")
    assert code == 0 and f"at step {step}" in text


def test_sigterm_before_the_first_step_saves_and_preparing_prints_no_traceback(corpus, tmp_path, cli):
    """The earliest SIGTERM of a run's training: while it builds the model and measures the peak, or in
    its first compiled call (it compiles for seconds), before any log line or checkpoint. It is acted on
    before the next call: the step reached is saved (0, or the first call's 2) and the same command
    resumes from it. train.py prepares the text files itself first: its tokenizer workers, ended by the
    pool with SIGTERM, must end quietly (they printed a traceback each, through the handler they inherited)."""
    texts = os.path.join(os.path.dirname(corpus), "*.txt")
    args = [*TINY, "--data", texts, "--vocab", "300", "--out", str(tmp_path), "--steps", "100000",
            "--save_interval", "100000", "--log_interval", "100000"]
    process = start(["train.py", *args])
    wait_for(process, "parameters, ")  # the line printed after the peak's measurement, before the loop
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    step = int(out.split("interrupted: saved step ")[1].split()[0])
    assert step in (0, 2), out  # before the first call, or in it
    code, text, _ = cli(*args[:-6], "--steps", str(step + 2))  # the same command, but for --steps
    assert code == 0 and f"ckpt-{step} at step {step}" in text, text


def test_ctrl_c_during_the_closing_sample_is_quiet(finished, tmp_path, corpus):
    out = copy(finished, tmp_path)
    process = start(["train.py", *TINY, "--data", corpus, "--out", str(out), "--sample_length", "2000"])
    wait_for(process, "saved the model to")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]


def test_ctrl_c_while_tokenizing_is_quiet(tmp_path):
    (tmp_path / "texts").mkdir()
    for i, file in enumerate(data.corpus_files("stdlib")[:1000]):
        shutil.copy(file, tmp_path / "texts" / f"{i}.py")
    process = subprocess.Popen([sys.executable, "data.py", "--input", str(tmp_path / "texts" / "*.py"), "--output",
                                str(tmp_path / "d"), "--vocab", "260", "--processes", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    while "tokenizing train" not in process.stderr.readline():  # progress lines: the workers are at it
        assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, workers included
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err and "BrokenPipe" not in err, err[-3000:]


def test_tokenizer_workers_do_not_keep_the_parents_sigterm_handler():
    """The pool ends its workers with SIGTERM. A worker forked from train.py inherits its handler (which
    raises KeyboardInterrupt), and printed a traceback each at the end of the quick start's tokenizing."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGTERM, train.Interrupts.handle)  # what train.py's __main__ installs
        data._init_worker(None)  # what each worker runs first
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # Ctrl-C is the parent's to handle
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
