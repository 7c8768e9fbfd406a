"""Every bad input is refused in one line, and none of them costs the user a run.

``BAD_INPUTS`` is the one list of bad inputs the suite walks: add the next one here.  Each
entry is a command (with ``{placeholders}`` for the files made below) and a phrase its
one-line error must contain.  Entries marked ``replaces`` are also given with ``--force``
over a finished run of that task, which must come out byte for byte as it was.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import make_text
from runfiles import run_cli, tree_bytes

from rnnlab.cli import main

TINY_CHARLM = [
    "--backend",
    "numpy",
    "--hidden-size",
    "8",
    "--seq-len",
    "8",
    "--batch-size",
    "2",
    "--max-steps",
    "2",
    "--eval-every",
    "2",
    "--sample-length",
    "8",
    "--quiet",
]
TINY_DENOISE = [
    "--backend",
    "numpy",
    "--hidden-size",
    "4",
    "--steps",
    "2",
    "--eval-every",
    "2",
    "--val-sequences",
    "16",
    "--test-sequences",
    "16",
    "--batch-size",
    "8",
    "--quiet",
]
TINY_FORECAST = [
    "--backend",
    "numpy",
    "--builtin-points",
    "200",
    "--window",
    "6",
    "--hidden-size",
    "4",
    "--epochs",
    "1",
    "--quiet",
]


@dataclass
class Bad:
    name: str
    argv: list  # the command; "{name}" is replaced by the path of file ``name`` below
    match: str  # a phrase of the one-line error
    replaces: str = ""  # the task whose finished run ``--force`` must leave untouched


BAD_INPUTS = [
    # text files
    Bad("text-utf16", ["charlm", "train", "--text", "{utf16}", *TINY_CHARLM], "is UTF-16", "charlm"),
    Bad("text-fifo", ["charlm", "train", "--text", "{fifo}", *TINY_CHARLM], "not a regular file", "charlm"),
    Bad("text-dev-zero", ["charlm", "train", "--text", "/dev/zero", *TINY_CHARLM], "not a regular file"),
    Bad("text-directory", ["charlm", "train", "--text", "{dir}", *TINY_CHARLM], "is a directory"),
    Bad(
        "text-one-character",
        ["charlm", "train", "--text", "{one_char}", *TINY_CHARLM],
        "one distinct character",
        "charlm",
    ),
    # config files and values
    Bad(
        "config-wrong-type",
        ["charlm", "train", "--config", "{config_wrong_type}", *TINY_CHARLM],
        "hidden_size (--hidden-size) must be an integer",
        "charlm",
    ),
    Bad("config-directory", ["charlm", "train", "--config", "{dir}", *TINY_CHARLM], "is a directory", "charlm"),
    Bad(
        "config-negative-weight-decay",
        ["charlm", "train", "--config", "{config_negative_wd}", *TINY_CHARLM],
        "--weight-decay must be zero (off) or a positive number",
        "charlm",
    ),
    Bad(
        "config-dropout-one",
        ["charlm", "train", "--config", "{config_dropout_one}", *TINY_CHARLM],
        "--dropout must be a number >= 0 and < 1, got 1.0",
        "charlm",
    ),
    Bad(
        "config-ema-decay-one",
        ["forecast", "train", "--config", "{config_ema_one}", *TINY_FORECAST],
        "--ema-decay must be a number >= 0 and < 1, got 1.0",
        "forecast",
    ),
    Bad(
        "tie-weights-sizes",
        ["charlm", "train", *TINY_CHARLM, "--embed-size", "4", "--tie-weights"],
        "--tie-weights needs --embed-size equal to --hidden-size",
        "charlm",
    ),
    Bad(
        "residual-with-nothing-to-add",
        ["charlm", "train", *TINY_CHARLM, "--residual"],
        "no layer here has such an input",
        "charlm",
    ),
    Bad(
        "config-embedding-for-values",
        ["denoise", "train", "--config", "{config_embed_denoise}", *TINY_DENOISE],
        "embed_size: denoise reads real values",
        "denoise",
    ),
    Bad("config-unknown-key", ["denoise", "train", "--config", "{config_unknown}", *TINY_DENOISE], "unknown key"),
    Bad("denoise-dt-over-tau", ["denoise", "train", "--dt", "5", "--tau", "2", *TINY_DENOISE], "dt", "denoise"),
    Bad(
        "device-unavailable",
        ["denoise", "train", *TINY_DENOISE, "--backend", "torch", "--device", "cuda:99"],
        "cuda",
        "denoise",
    ),
    Bad(
        "hidden-size-too-big",
        ["charlm", "train", *TINY_CHARLM, "--hidden-size", "1000000000"],
        "parameters: training it needs",
        "charlm",
    ),
    Bad(
        "layers-too-many",
        ["forecast", "train", *TINY_FORECAST, "--layers", "100000000"],
        "parameters: training it needs",
        "forecast",
    ),
    # price files
    Bad("csv-header-only", ["forecast", "train", "--csv", "{csv_header_only}", *TINY_FORECAST], "no rows", "forecast"),
    Bad("csv-bad-byte-later", ["forecast", "train", "--csv", "{csv_bad_byte}", *TINY_FORECAST], "UTF-8"),
    Bad("csv-huge-header", ["forecast", "train", "--csv", "{csv_huge_header}", *TINY_FORECAST], "line 1: longer than"),
    # Bounded before the parser sees them: 200,000 columns took 138 s to say "1 points are too few".
    Bad("csv-wide-header", ["forecast", "train", "--csv", "{csv_wide_header}", *TINY_FORECAST], "line 1: longer than"),
    Bad(
        "csv-many-columns", ["forecast", "train", "--csv", "{csv_many_columns}", *TINY_FORECAST], "line 1: 100 columns"
    ),
    Bad("csv-long-row", ["forecast", "train", "--csv", "{csv_long_row}", *TINY_FORECAST], "line 3: longer than 4,096"),
    Bad(
        "sample-absurd-length",
        ["charlm", "sample", "--run", "{ckpt_good}", "--length", "99999999999999999999"],
        "more than one sample may be (10,000,000 characters)",
    ),
    Bad("csv-fifo", ["forecast", "train", "--csv", "{fifo}", *TINY_FORECAST], "not a regular file"),
    # imported weights
    Bad(
        "weights-1d", ["import", "--weights", "{weights_1d}", "--format", "min-char-rnn", "--out", "{new}"], "two axes"
    ),
    Bad(
        "weights-empty",
        ["import", "--weights", "{weights_empty}", "--format", "min-char-rnn", "--out", "{new}"],
        "is empty",
    ),
    Bad(
        "weights-non-finite",
        ["import", "--weights", "{weights_nan}", "--format", "min-char-rnn", "--out", "{new}"],
        "NaN or infinite",
    ),
    Bad(
        "weights-complex",
        ["import", "--weights", "{weights_complex}", "--format", "min-char-rnn", "--out", "{new}"],
        "complex",
    ),
    # damaged checkpoints
    Bad("checkpoint-missing-field", ["charlm", "eval", "--run", "{ckpt_missing_field}"], "damaged checkpoint"),
    Bad("checkpoint-wrong-type", ["charlm", "train", "--resume", "--out", "{ckpt_wrong_type}"], "damaged checkpoint"),
    # Messages that used to mislead: "Invalid argument", "upgrade rnnlab", "does not exist".
    Bad(
        "checkpoint-negative-log-size",
        ["charlm", "train", "--resume", "--out", "{ckpt_negative_log}"],
        "the length recorded for metrics.jsonl is -7",
    ),
    Bad("checkpoint-version-text", ["charlm", "eval", "--run", "{ckpt_version_text}"], "format version is '1', not"),
    # Hand-edited checkpoints that used to resume: checked against the run's own config and data.
    *(
        Bad(
            f"checkpoint-{edit}",
            ["charlm", "train", "--resume", "--out", f"{{ckpt_{edit}}}"],
            match,
        )
        for edit, match in (
            ("cursor_out", "the data cursor is at 1000000000"),
            ("unknown_loop", "fields this rnnlab does not write: surprise"),
            ("log_name", "names logs ['../escape.jsonl']"),
            ("step_negative", "loop.step: is -7"),
            ("dtype_edit", "its tensors are float32, but the run is float64"),
        )
    ),
    Bad("run-that-is-a-file", ["charlm", "eval", "--run", "{good_text}"], "is not a directory"),
    Bad("checkpoint-absurd-size", ["charlm", "sample", "--run", "{ckpt_absurd_size}"], "damaged checkpoint"),
    Bad("checkpoint-edited-text", ["charlm", "eval", "--run", "{ckpt_edited_text}"], "not the text"),
    # sweep spaces
    Bad(
        "space-step-zero",
        ["sweep", "denoise", "--space", "{space_step_zero}", "--out", "{new}", *TINY_DENOISE[:-1]],
        "step must be a number > 0",
    ),
    Bad(
        "space-log-yes",
        ["sweep", "denoise", "--space", "{space_log_yes}", "--out", "{new}", *TINY_DENOISE[:-1]],
        "log must be true or false",
    ),
    Bad(
        "sweep-every-trial-same-error",
        ["sweep", "charlm", "--text", "{utf16}", "--trials", "3", "--out", "{new}", *TINY_CHARLM[:-1]],
        "is UTF-16",
    ),
    Bad(
        "sweep-every-trial-too-short",
        [
            "sweep",
            "charlm",
            "--text",
            "{short_text}",
            "--space",
            "{space_lr}",
            "--trials",
            "4",
            "--out",
            "{new}",
            *TINY_CHARLM[:-1],
        ],
        "every trial fails the same way",
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every file the bad inputs name, and a finished run of each task (made once)."""
    d = tmp_path_factory.mktemp("bad")
    paths = {"dir": d / "a_directory", "fifo": d / "fifo"}
    paths["dir"].mkdir()
    os.mkfifo(paths["fifo"])
    text = make_text(3000)
    (d / "good.txt").write_text(text, encoding="utf-8")
    paths["good_text"] = d / "good.txt"
    for name, content in {
        "utf16": text.encode("utf-16"),
        "one_char": b"a" * 500,
        "config_wrong_type": b'hidden_size = "big"\n',
        "config_unknown": b"hiden_size = 3\n",
        "config_negative_wd": b"weight_decay = -0.1\n",
        "config_dropout_one": b"dropout = 1.0\n",
        "config_ema_one": b"ema_decay = 1.0\n",
        "config_embed_denoise": b"embed_size = 16\n",
        "csv_header_only": b"timestamp,open,high,low,close,volume\n",
        "csv_bad_byte": b"timestamp,open\n"
        + b"".join(f"2021-01-{i:02d},{i}\n".encode() for i in range(1, 28)) * 400
        + b"2021-02-01,\xff\n",
        "csv_huge_header": b"x" * 10_000_000 + b"\n1,2\n",
        "csv_wide_header": b",".join(b"c%d" % i for i in range(200_000)) + b"\n1,2\n",
        "csv_many_columns": b",".join(b"c" for _ in range(100)) + b"\n1,2\n",
        "csv_long_row": b"timestamp,open\n2021-01-01,1\n2021-01-02," + b"9" * 5000 + b"\n",
        "space_step_zero": b"[hidden_size]\nlow = 4\nhigh = 8\nstep = 0\n",
        "space_log_yes": b'[lr]\nlow = 0.001\nhigh = 0.01\nlog = "yes"\n',
        "space_lr": b"[lr]\nlow = 0.001\nhigh = 0.01\n",
        "short_text": b"abcabcabcabcabc",
    }.items():
        paths[name] = d / name
        paths[name].write_bytes(content)
    weights = {
        "Wxh": np.zeros((4, 3)),
        "Whh": np.zeros((4, 4)),
        "Why": np.zeros((3, 4)),
        "bh": np.zeros((4, 1)),
        "by": np.zeros((3, 1)),
    }
    for name, change in {
        "weights_1d": {"Wxh": np.zeros(12)},
        "weights_empty": {"Whh": np.zeros((0, 4))},
        "weights_nan": {"Why": np.full((3, 4), np.nan)},
        "weights_complex": {"bh": np.zeros((4, 1), dtype=complex)},
    }.items():
        paths[name] = d / f"{name}.npz"
        np.savez(paths[name], **{**weights, **change})
    runs = {}
    for task, argv in (
        ("charlm", ["charlm", "train", "--text", paths["good_text"], *TINY_CHARLM]),
        ("denoise", ["denoise", "train", *TINY_DENOISE]),
        ("forecast", ["forecast", "train", *TINY_FORECAST]),
    ):
        runs[task] = d / f"run_{task}"
        assert main([str(a) for a in argv] + ["--out", str(runs[task])]) == 0
    paths["ckpt_good"] = runs["charlm"]
    for name, edit in {
        "ckpt_missing_field": lambda m: m.pop("spec"),
        "ckpt_wrong_type": lambda m: m["loop"].update(step="twelve"),
        "ckpt_negative_log": lambda m: m["logs"].update({"metrics.jsonl": -7}),
        "ckpt_version_text": lambda m: m.update(version="1"),
        "ckpt_cursor_out": lambda m: m["data"].update(position=10**9),
        "ckpt_unknown_loop": lambda m: m["loop"].update(surprise=1),
        "ckpt_log_name": lambda m: m["logs"].update({"../escape.jsonl": 0}),
        "ckpt_step_negative": lambda m: m["loop"].update(step=-7),
        "ckpt_dtype_edit": lambda m: m["config"].update(dtype="float64"),
        "ckpt_absurd_size": lambda m: m["spec"].update(num_layers=10**8),
        "ckpt_edited_text": lambda m: m["config"].update(text=str(paths["one_char"])),
    }.items():
        paths[name] = d / name
        shutil.copytree(runs["charlm"], paths[name])
        meta_path = paths[name] / "checkpoint.json"
        meta = json.loads(meta_path.read_text())
        edit(meta)
        meta_path.write_text(json.dumps(meta))
    return d, paths, runs


def _argv(bad: Bad, paths: dict, new) -> list[str]:
    return [str(a).format(**{k: str(v) for k, v in paths.items()}, new=str(new)) for a in bad.argv]


def assert_one_line_error(code: int, err: str, match: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnlab: error: ") and "Traceback" not in err
    assert len(lines[0]) < 1000, lines[0][:200]
    assert match.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_a_bad_input_is_one_line(bad, files, tmp_path, capsys):
    _, paths, _ = files
    code, _, err = run_cli(
        capsys,
        *_argv(bad, paths, tmp_path / "new"),
        *(["--out", tmp_path / "new"] if bad.argv[1] == "train" and "--out" not in bad.argv else []),
    )
    assert_one_line_error(code, err, bad.match)
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").glob("*.safetensors"))


FORCED = [b for b in BAD_INPUTS if b.replaces]


@pytest.mark.parametrize("bad", FORCED, ids=[b.name for b in FORCED])
def test_force_with_a_bad_input_leaves_the_old_run_byte_identical(bad, files, tmp_path, capsys):
    _, paths, runs = files
    run = tmp_path / "old_run"
    shutil.copytree(runs[bad.replaces], run)
    before = tree_bytes(run)
    code, _, err = run_cli(capsys, *_argv(bad, paths, tmp_path / "new"), "--out", run, "--force")
    assert_one_line_error(code, err, bad.match)
    assert tree_bytes(run) == before


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_one_blocks_nothing(files, tmp_path, capsys):
    _, paths, runs = files
    run = tmp_path / "run"
    shutil.copytree(runs["charlm"], run)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rnnlab.lock import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree_bytes(run)
        for extra in (["--resume", "--max-steps", "4"], ["--force", "--text", paths["good_text"], *TINY_CHARLM]):
            code, _, err = run_cli(capsys, "charlm", "train", "--out", run, *extra)
            line = assert_one_line_error(code, err, "is being written by")
            assert f"process {holder.pid}" in line
        assert tree_bytes(run) == before
    finally:
        holder.kill()  # a crashed writer: the kernel drops its lock
        holder.wait()
    code, _, err = run_cli(capsys, "charlm", "train", "--out", run, "--resume", "--max-steps", "4")
    assert code == 0, err


def test_one_process_cannot_take_a_run_twice(tmp_path):
    from rnnlab.errors import UserError
    from rnnlab.lock import RunLock

    with RunLock(tmp_path):
        with pytest.raises(UserError, match="this same process"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on leaving the block, and the refusal above dropped nothing
        pass


def test_two_trainings_started_together_on_one_out_one_trains(files, tmp_path):
    _, paths, _ = files
    run = tmp_path / "race"
    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        "charlm",
        "train",
        "--text",
        str(paths["good_text"]),
        "--out",
        str(run),
        *TINY_CHARLM[:-3],
        "--max-steps",
        "30",
        "--eval-every",
        "10",
        "--quiet",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is being written by" in refused or "already holds a run" in refused, refused
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30]  # one run's rows, once


def test_out_that_cannot_be_a_directory_is_one_line_for_every_command(files, tmp_path, capsys):
    _, paths, runs = files
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    under = a_file / "sub"
    dir_commands = [
        ["charlm", "train", "--text", paths["good_text"], *TINY_CHARLM],
        ["denoise", "train", *TINY_DENOISE],
        ["forecast", "train", *TINY_FORECAST],
        ["denoise", "search", "--lrs", "0.01", *[a for a in TINY_DENOISE if a != "--quiet"]],
        ["sweep", "denoise", "--trials", "1", *TINY_DENOISE[:-1]],
        ["demo", "--quick", "--quiet"],
        ["import", "--weights", paths["weights_1d"], "--format", "min-char-rnn"],
    ]
    for command in dir_commands:
        for out in (a_file, under):
            code, _, err = run_cli(capsys, *command, "--out", out)
            line = assert_one_line_error(code, err, str(a_file))
            assert "file" in line, (command, line)
    file_commands = [["report", runs["charlm"]], ["export", "--run", runs["charlm"], "--format", "torch"]]
    for command in file_commands:
        code, _, err = run_cli(capsys, *command, "--out", under / "x.pt")
        assert_one_line_error(code, err, str(a_file))
    assert a_file.read_text() == "not a directory"


def test_a_text_too_large_for_memory_is_refused_with_the_limit(files, tmp_path, capsys, monkeypatch):
    from rnnlab import memory

    _, paths, _ = files
    monkeypatch.setattr(memory, "memory_bytes", lambda: 20 * 1000)  # a machine that holds 1,000 characters
    code, _, err = run_cli(
        capsys, "charlm", "train", "--text", paths["good_text"], *TINY_CHARLM, "--out", tmp_path / "run"
    )
    line = assert_one_line_error(code, err, "takes texts up to")
    assert "head -c" in line


def test_warnings_are_held_and_an_unexpected_error_is_one_line(tmp_path, capsys, monkeypatch):
    import warnings

    from rnnlab import cli
    from rnnlab.errors import UserError

    def warns_then(exc):
        def command(args):
            warnings.warn("a library complains", UserWarning, stacklevel=2)
            warnings.warn("a library complains", UserWarning, stacklevel=2)
            if exc is not None:
                raise exc
            return 0

        return command

    for exc, match in (
        (UserError("bad thing"), "rnnlab: error: bad thing"),
        (OSError(28, "No space left on device", "/x/y"), "no space left"),
        (ValueError("x" * 5000), "internal error: ValueError"),
        (MemoryError(), "out of memory"),
    ):
        monkeypatch.setitem(cli.COMMANDS, ("report", None), warns_then(exc))
        code, _, err = run_cli(capsys, "report", tmp_path)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and match in lines[0] and len(lines[0]) < 1000, err
    monkeypatch.setitem(cli.COMMANDS, ("report", None), warns_then(None))
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code == 0 and err.strip().splitlines() == ["rnnlab: warning: UserWarning: a library complains"]


def test_every_task_trains_on_a_core_install_by_default():
    """Each task's default backend needs nothing beyond the core install (NumPy)."""
    from rnnlab.backends import BACKENDS
    from rnnlab.tasks import TASKS

    for name, entry in TASKS.items():
        assert BACKENDS[entry.config_cls().backend].package is None, name


@pytest.mark.parametrize("task,backend", [("denoise", "jax"), ("forecast", "torch")])
def test_a_backend_that_is_not_installed_names_the_extra(task, backend, tmp_path, capsys, monkeypatch):
    """On a core install (NumPy only) a chosen backend that is missing says what to install."""
    from rnnlab import backends

    def missing(name):
        if name == backend:
            raise ModuleNotFoundError(f"No module named {backend!r}", name=backend)
        return original(name)

    original = backends.get_backend
    monkeypatch.setattr(backends, "get_backend", missing)
    monkeypatch.setattr("rnnlab.runs.get_backend", missing)
    argv = {
        "denoise": ["denoise", "train", *[a for a in TINY_DENOISE if a not in ("--backend", "numpy")]],
        "forecast": ["forecast", "train", *[a for a in TINY_FORECAST if a not in ("--backend", "numpy")]],
    }[task]
    code, _, err = run_cli(capsys, *argv, "--backend", backend, "--out", tmp_path / "run")
    assert_one_line_error(code, err, f"pip install 'rnnlab[{backend}]'")


def test_a_refused_writer_removes_nothing_even_where_it_thinks_it_made_the_directory(tmp_path, monkeypatch):
    """Two processes starting on one new --out: the one that loses the lock leaves the directory and
    its lock file to the winner, even if its own mkdir seemed to create the directory."""
    from rnnlab import runs
    from rnnlab.errors import UserError
    from rnnlab.lock import LOCK_NAME

    out = tmp_path / "new_run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rnnlab.lock import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(runs, "make_dir", lambda path, flag_name="--out": True)
        with pytest.raises(UserError, match="is being written by"):
            with runs.RunDir(out, resume=False, force=False):
                pass
        assert (out / LOCK_NAME).exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("fmt,name", [("torch", "m.pt"), ("onnx", "m.onnx"), ("min-char-rnn", "m.npz")])
def test_export_out_a_directory_read_only_or_a_link(fmt, name, files, tmp_path, capsys):
    """--out of export, in every format: a directory is one line naming it; a read-only place
    names --out (not the temporary file); a link is followed, as cp does, its target replaced."""
    _, _, runs = files
    run = runs["charlm"]
    if fmt == "min-char-rnn":  # the classic format holds the classic exercise's model only
        run = tmp_path / "mcr"
        assert (
            main(
                [
                    "charlm",
                    "train",
                    "--preset",
                    "min-char-rnn",
                    "--max-steps",
                    "2",
                    "--eval-every",
                    "2",
                    "--sample-length",
                    "4",
                    "--quiet",
                    "--text",
                    str(files[1]["good_text"]),
                    "--out",
                    str(run),
                ]
            )
            == 0
        )
    export = ["export", "--run", run, "--format", fmt]
    folder = tmp_path / "a_folder"
    folder.mkdir()
    code, _, err = run_cli(capsys, *export, "--out", folder)
    assert_one_line_error(code, err, f"{folder}' is a directory")
    # A place that refuses the write (root may write anywhere, so the refusal is simulated at the rename).
    import errno

    from rnnlab import checkpoint

    def refused(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint.os, "replace", refused)
        code, _, err = run_cli(capsys, *export, "--out", tmp_path / name)
    line = assert_one_line_error(code, err, f"cannot write or read ({tmp_path / name})")
    assert ".tmp" not in line
    target, link = tmp_path / "real" / name, tmp_path / name
    target.parent.mkdir()
    target.write_bytes(b"old")
    link.symlink_to(target)
    code, _, err = run_cli(capsys, *export, "--out", link)
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes() != b"old" and len(target.read_bytes()) > 100


def test_a_pickled_torch_file_is_refused_without_torchs_unsafe_advice(tmp_path, capsys):
    import torch

    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: pickled code, not a state_dict
    code, _, err = run_cli(capsys, "import", "--weights", path, "--format", "torch", "--out", tmp_path / "run")
    line = assert_one_line_error(code, err, "does not load because loading them runs code")
    assert "weights_only=False" not in line


@pytest.mark.parametrize("name", [".rnnlab.lock", "metrics.jsonl", "samples.jsonl", "checkpoint.json"])
def test_a_link_inside_a_run_is_refused_and_its_target_untouched(name, files, tmp_path, capsys):
    """A run's own files are read and written without following links: a link planted in a run
    (the lock, a log, the checkpoint) is one line, and what it points to stays as it was."""
    _, _, runs = files
    run = tmp_path / "run"
    shutil.copytree(runs["charlm"], run)
    outside = tmp_path / "outside.txt"
    outside.write_bytes((run / name).read_bytes() if (run / name).exists() else b"someone else's file\n")
    before = outside.read_bytes()
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(outside)
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--out", run, "--max-steps", "4")
    assert_one_line_error(code, err, "is a symbolic link")
    assert outside.read_bytes() == before


def test_a_link_in_place_of_a_backtest_origin_is_refused(tmp_path, capsys):
    from test_backtest import _backtest_args

    out, elsewhere = tmp_path / "bt", tmp_path / "elsewhere"
    code, _, err = run_cli(capsys, *_backtest_args(out))
    assert code == 0, err
    shutil.rmtree(out / "origin-002")
    elsewhere.mkdir()
    (out / "origin-002").symlink_to(elsewhere)
    code, _, err = run_cli(capsys, *_backtest_args(out))
    assert_one_line_error(code, err, "is a symbolic link")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("file_name", ["../../outside.bin", "/etc/hostname", "sub/train.bin"])
def test_a_prepared_manifest_names_only_files_inside_its_directory(file_name, files, tmp_path, capsys):
    _, paths, _ = files
    prepared = tmp_path / "prepared"
    assert main(["charlm", "prepare", "--text", str(paths["good_text"]), "--out", str(prepared), "--quiet"]) == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    manifest["train"]["file"] = file_name
    (prepared / "manifest.json").write_text(json.dumps(manifest))
    for command in (
        ["charlm", "prepare", "--verify", prepared],
        ["charlm", "train", "--data", prepared, *TINY_CHARLM, "--out", tmp_path / "run"],
    ):
        code, _, err = run_cli(capsys, *command)
        assert_one_line_error(code, err, "not a plain file name")


def test_sampling_with_a_vanishing_temperature_or_nan_weights(files, capsys):
    """--temperature 1e-320 overflows the logits: the likeliest characters are sampled, as the
    limit says, instead of an internal error on NaN probabilities; NaN weights are one line."""
    import rnnlab
    from rnnlab.errors import UserError
    from rnnlab.tasks.charlm import sample_text

    _, _, runs = files
    code, text, err = run_cli(
        capsys, "charlm", "sample", "--run", runs["charlm"], "--length", "20", "--temperature", "1e-320"
    )
    assert code == 0 and len(text.strip("\n")) >= 1, err
    greedy = run_cli(capsys, "charlm", "sample", "--run", runs["charlm"], "--length", "20", "--temperature", "0")[1]
    assert text == greedy
    model = rnnlab.load(runs["charlm"])
    params = {k: np.full_like(v, np.nan) for k, v in model.trainer.params.items()}
    model.trainer.load_params(params)
    with pytest.raises(UserError, match="not finite"):
        sample_text(model.trainer, model.vocab, 5)


DEEP = "[" * 200_000 + "]" * 200_000  # what made a bare RecursionError


@pytest.mark.parametrize(
    "target, content, command, match",
    [
        ("checkpoint.json", "[]", ["charlm", "sample", "--run", "{run}"], "is a list, not an object"),
        ("checkpoint.json", DEEP, ["charlm", "sample", "--run", "{run}"], "nests deeper than 64"),
        ("checkpoint.json", DEEP, ["report", "{run}"], "nests deeper than 64"),
        ("checkpoint.json", "vocab=7", ["charlm", "sample", "--run", "{run}"], "vocab: is a int, not str"),
        (
            "samples.jsonl",
            '{"step": 0}\n',
            ["report", "{run}"],
            "samples.jsonl, line 1 is damaged: lacks the field 'text'",
        ),
        ("samples.jsonl", "[1, 2]\n", ["report", "{run}"], "line 1 is damaged: is a list, not an object"),
        ("manifest.json", "[]", ["charlm", "prepare", "--verify", "{prepared}"], "is a list, not an object"),
        ("manifest.json", DEEP, ["charlm", "prepare", "--verify", "{prepared}"], "nests deeper than 64"),
    ],
    ids=[
        "ckpt-list",
        "ckpt-deep",
        "report-deep",
        "ckpt-vocab-number",
        "sample-row-no-text",
        "sample-row-list",
        "manifest-list",
        "manifest-deep",
    ],
)
def test_damaged_json_is_one_line_naming_the_file_and_field(target, content, command, match, files, tmp_path, capsys):
    _, paths, runs = files
    run, prepared = tmp_path / "run", tmp_path / "prepared"
    shutil.copytree(runs["charlm"], run)
    assert main(["charlm", "prepare", "--text", str(paths["good_text"]), "--out", str(prepared), "--quiet"]) == 0
    where = prepared if target == "manifest.json" else run
    if content == "vocab=7":
        meta = json.loads((run / target).read_text())
        meta["vocab"] = 7
        content = json.dumps(meta)
    (where / target).write_text(content, encoding="utf-8")
    argv = [a.format(run=run, prepared=prepared) for a in command]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, match)
    if "deep" in match or target == "checkpoint.json" and "list" in match:
        import rnnlab
        from rnnlab.errors import UserError

        if target == "checkpoint.json":
            with pytest.raises(UserError, match=match):
                rnnlab.load(run, which="checkpoint")


def test_damaged_backtest_files_are_one_line(tmp_path, capsys):
    """plan.json as a list, a truncated forecasts.json, a fit.json without its keys: one line each."""
    from test_backtest import _backtest_args

    out = tmp_path / "bt"
    assert run_cli(capsys, *_backtest_args(out))[0] == 0
    originals = {
        name: (out / name).read_bytes() for name in ("plan.json", "origin-001/forecasts.json", "origin-000/fit.json")
    }
    for name, content, match in (
        ("plan.json", "[]", "plan.json is damaged: is a list, not an object"),
        ("origin-001/forecasts.json", originals["origin-001/forecasts.json"][:50].decode(), "is not valid JSON"),
        ("origin-000/fit.json", "{}", "fit.json is damaged: lacks the field 'first_point'"),
    ):
        (out / name).write_text(content, encoding="utf-8")
        if name.endswith("fit.json"):
            (out / "origin-000" / "forecasts.json").unlink()  # so the fit's facts are read again
        code, _, err = run_cli(capsys, *_backtest_args(out))
        assert_one_line_error(code, err, match)
        (out / name).write_bytes(originals[name])


def test_ids_beyond_the_vocabulary_in_prepared_data_are_one_line(files, tmp_path, capsys):
    """A train.bin holding an id the vocabulary does not have (its manifest hashed to match, as a
    crafted file would be): --verify and training say so in one line instead of an IndexError."""
    import hashlib

    _, paths, _ = files
    prepared = tmp_path / "prepared"
    assert main(["charlm", "prepare", "--text", str(paths["good_text"]), "--out", str(prepared), "--quiet"]) == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    ids = np.fromfile(prepared / "train.bin", dtype=manifest["dtype"])
    ids[100] = len(manifest["vocab"]) + 3
    ids.tofile(prepared / "train.bin")
    manifest["train"]["sha256"] = hashlib.sha256((prepared / "train.bin").read_bytes()).hexdigest()
    (prepared / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "charlm", "prepare", "--verify", prepared)
    assert_one_line_error(code, err, "beyond its vocabulary")
    code, _, err = run_cli(
        capsys,
        "charlm",
        "train",
        "--data",
        prepared,
        *TINY_CHARLM,
        "--batch-size",
        "1",
        "--seq-len",
        "120",
        "--out",
        tmp_path / "run",
    )
    assert_one_line_error(code, err, f"holds id {len(manifest['vocab']) + 3} (at position 100")


def test_a_deep_lock_record_or_staged_checkpoint_json_does_not_crash(tmp_path):
    """The two readers that tolerate a damaged file (the lock's holder record, a crashed save's
    JSON) go through the same reader: absurd nesting there is tolerated, not a RecursionError."""
    from rnnlab import checkpoint, lock

    (tmp_path / ".rnnlab.lock").write_text(DEEP)
    assert lock._holder_text(tmp_path / ".rnnlab.lock") == "another process"
    (tmp_path / "checkpoint.next.safetensors").write_bytes(b"staged")
    (tmp_path / "checkpoint.json").write_text(DEEP)
    checkpoint.recover(tmp_path)  # nothing to complete: the JSON does not commit the staged tensors
    assert (tmp_path / "checkpoint.next.safetensors").exists() or not (tmp_path / "checkpoint.safetensors").exists()
