"""charlm prepare / train --data: prepared ids equal the text's, a run from them ends bit-identical
to the run from the text (and resumes exactly), directories, compressed files and standard input
are read as one corpus, and bad prepared data is one line."""

import gzip
import io
import json
import lzma
import sys

import numpy as np
import pytest
from conftest import make_text
from test_charlm_cli import assert_user_error, params_of, run_cli

from rnnlab.data import corpus

TRAIN = [
    "--backend",
    "numpy",
    "--hidden-size",
    "16",
    "--seq-len",
    "8",
    "--batch-size",
    "4",
    "--max-steps",
    "6",
    "--eval-every",
    "3",
    "--sample-length",
    "20",
    "--quiet",
]


@pytest.fixture
def text_path(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(6000, seed=3) + "é€")  # a few characters beyond ASCII, in the validation part
    return path


def prepare(capsys, text, out, *extra):
    code, stdout, err = run_cli(capsys, "charlm", "prepare", "--text", text, "--out", out, "--quiet", *extra)
    assert code == 0, err
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_a_run_from_prepared_data_ends_bit_identical_to_the_run_from_the_text(tmp_path, capsys, text_path):
    manifest = prepare(capsys, text_path, tmp_path / "data")
    assert manifest["dtype"] == "uint8" and manifest["val"]["dropped_unknown"] == 2
    assert run_cli(capsys, "charlm", "train", "--text", text_path, "--out", tmp_path / "a", *TRAIN)[0] == 0
    assert run_cli(capsys, "charlm", "train", "--data", tmp_path / "data", "--out", tmp_path / "b", *TRAIN)[0] == 0
    for stem in ("checkpoint", "best"):
        a, b = params_of(tmp_path / "a", stem), params_of(tmp_path / "b", stem)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in "ab"]
    assert [r["val_loss"] for r in rows[0]] == [r["val_loss"] for r in rows[1]]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]
    meta = [json.loads((tmp_path / d / "checkpoint.json").read_text()) for d in "ab"]
    assert meta[0]["text_sha256"] == meta[1]["text_sha256"] == manifest["text_sha256"]
    code, out, err = run_cli(capsys, "charlm", "eval", "--run", tmp_path / "b", "--json")
    assert code == 0 and json.loads(out)["text"].startswith("validation part of"), err


def test_resume_from_prepared_data_is_exact(tmp_path, capsys, text_path):
    prepare(capsys, text_path, tmp_path / "data")
    data = ["--data", tmp_path / "data"]
    assert run_cli(capsys, "charlm", "train", *data, "--out", tmp_path / "straight", *TRAIN)[0] == 0
    short = [a if a != "6" else "3" for a in TRAIN]
    assert run_cli(capsys, "charlm", "train", *data, "--out", tmp_path / "resumed", *short)[0] == 0
    assert (
        run_cli(
            capsys, "charlm", "train", *data, "--out", tmp_path / "resumed", "--resume", "--max-steps", "6", "--quiet"
        )[0]
        == 0
    )
    a, b = params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_directory_of_plain_and_compressed_files_is_one_corpus(tmp_path, capsys):
    parts = [make_text(1500, seed=s) for s in range(3)]
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(parts[0])
    (folder / "b.txt.gz").write_bytes(gzip.compress(parts[1].encode()))
    (folder / "sub" / "c.xz").write_bytes(lzma.compress(parts[2].encode()))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    joined = tmp_path / "joined.txt"
    joined.write_text("\n".join(parts))  # sorted paths: a.txt, b.txt.gz, sub/c.xz
    m_dir = prepare(capsys, folder, tmp_path / "d1")
    m_file = prepare(capsys, joined, tmp_path / "d2")
    assert m_dir["files"] == 5 and m_dir["files_skipped_not_text"] == 2
    assert m_dir["text_sha256"] == m_file["text_sha256"] and m_dir["chars"] == len("\n".join(parts))
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "d1" / name).read_bytes() == (tmp_path / "d2" / name).read_bytes()


def test_standard_input_and_a_large_vocabulary(tmp_path, capsys, monkeypatch):
    text = "".join(chr(0x4E00 + i % 400) for i in range(5000))  # 400 distinct characters: uint16 ids
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    manifest = prepare(capsys, "-", tmp_path / "d")
    assert manifest["dtype"] == "uint16" and len(manifest["vocab"]) == 400
    prepared = corpus.open_prepared(tmp_path / "d")
    assert prepared.train.dtype == np.uint16 and len(prepared.train) == 4500
    assert "".join(manifest["vocab"][i] for i in prepared.train[:10]) == text[:10]


def test_verify_and_damaged_prepared_data(tmp_path, capsys, text_path):
    prepare(capsys, text_path, tmp_path / "d")
    code, out, _ = run_cli(capsys, "charlm", "prepare", "--verify", tmp_path / "d")
    assert code == 0 and "match their checksums" in out
    train = tmp_path / "d" / "train.bin"
    good = train.read_bytes()
    flipped = bytearray(good)
    flipped[100] ^= 0x01
    train.write_bytes(bytes(flipped))
    assert_user_error(capsys, "charlm", "prepare", "--verify", tmp_path / "d", match="does not match its checksum")
    train.write_bytes(good[:-10])
    line = assert_user_error(
        capsys, "charlm", "train", "--data", tmp_path / "d", "--out", tmp_path / "r", *TRAIN, match="train.bin has"
    )
    assert "manifest.json says" in line and not (tmp_path / "r").exists()
    manifest_path = tmp_path / "d" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(dict(manifest, version=99)))
    assert_user_error(
        capsys, "charlm", "train", "--data", tmp_path / "d", "--out", tmp_path / "r", *TRAIN, match="format version 99"
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda tmp: tmp.mkdir() or tmp, "not prepared data"),
        (lambda tmp: (tmp.mkdir(), (tmp / "x.bin").write_bytes(b"\x00\x01"))[0] or tmp, "not prepared data"),
    ],
)
def test_a_directory_that_is_not_prepared_is_refused(tmp_path, capsys, make, match):
    folder = make(tmp_path / "d")
    assert_user_error(capsys, "charlm", "train", "--data", folder, "--out", tmp_path / "r", match=match)


@pytest.mark.parametrize(
    "content, match",
    [
        ({}, "is a directory with no files"),
        ({"a.bin": b"\x00\x01\x02"}, "holds no UTF-8 text file"),
        ({"a.txt": "ab"}, "too few"),
        ({"a.txt": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, "only one distinct character"),
    ],
)
def test_bad_corpora_are_one_line(tmp_path, capsys, content, match):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in content.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    assert_user_error(capsys, "charlm", "prepare", "--text", folder, "--out", tmp_path / "out", match=match)
    assert not (tmp_path / "out").exists()


def test_text_and_data_together_are_refused(tmp_path, capsys, text_path):
    assert_user_error(
        capsys,
        "charlm",
        "train",
        "--text",
        text_path,
        "--data",
        tmp_path,
        "--out",
        tmp_path / "r",
        match="give --text or --data, not both",
    )


def test_ranks_with_different_prepared_data_stop_with_one_line(tmp_path, capsys, text_path, monkeypatch):
    """Under torchrun each rank compares its manifest with the others' (here a stand-in shard
    whose other rank reports another manifest)."""
    from rnnlab import distributed

    prepare(capsys, text_path, tmp_path / "data")

    class TwoRanks(distributed.Shard):
        def all_values(self, value):
            return [value, ("another text",) + tuple(value[1:])]

    monkeypatch.setattr(distributed, "current", lambda: TwoRanks())
    assert_user_error(
        capsys,
        "charlm",
        "train",
        "--data",
        tmp_path / "data",
        "--out",
        tmp_path / "r",
        *TRAIN,
        match="rank 1 has other prepared data than rank 0",
    )


def test_the_report_says_how_much_validation_text_each_evaluation_reads(tmp_path, capsys, text_path):
    prepare(capsys, text_path, tmp_path / "data")
    args = [a if a != "--quiet" else "--val-chars" for a in TRAIN] + ["100", "--quiet"]
    assert run_cli(capsys, "charlm", "train", "--data", tmp_path / "data", "--out", tmp_path / "r", *args)[0] == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Each evaluation reads the first 100 (--val-chars) of the 598 characters" in page


def test_a_prepare_that_fails_midway_leaves_nothing_and_the_rerun_works(tmp_path, capsys, text_path, monkeypatch):
    """A full disk while the ids are written: one line, no half-prepared --out (before, train.bin
    and val.bin stayed without a manifest and the rerun said "--out not empty"), and the same
    command then succeeds."""
    import errno

    out = tmp_path / "prepared"
    real_write = corpus._Writer.write

    def full_disk(self, ids):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(corpus._Writer, "write", full_disk)
    code, _, err = run_cli(capsys, "charlm", "prepare", "--text", text_path, "--out", out, "--quiet")
    assert code == 2 and "no space left" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name != "corpus.txt"] == []
    monkeypatch.setattr(corpus._Writer, "write", real_write)
    prepare(capsys, text_path, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.bin", "val.bin"]


def test_a_leftover_staging_directory_is_removed_by_the_next_prepare(tmp_path, capsys, text_path):
    out = tmp_path / "prepared"
    leftover = tmp_path / ".prepared.preparing"
    leftover.mkdir()
    (leftover / "train.bin").write_bytes(b"half")
    prepare(capsys, text_path, out)
    assert not leftover.exists() and (out / "manifest.json").exists()


@pytest.mark.parametrize("source", ["text", "prepared"])
def test_val_fraction_0_trains_without_validation_as_documented(source, tmp_path, capsys, text_path):
    """prepare --val-fraction 0 and train --text --val-fraction 0 agree with the docs: training
    without validation (no val loss, no best.*; the last checkpoint is sampled)."""
    out = tmp_path / "run"
    if source == "prepared":
        prepare(capsys, text_path, tmp_path / "prepared", "--val-fraction", "0")
        data = ["--data", tmp_path / "prepared"]
    else:
        data = ["--text", text_path, "--val-fraction", "0"]
    code, _, err = run_cli(
        capsys,
        "charlm",
        "train",
        *data,
        "--backend",
        "numpy",
        "--hidden-size",
        "8",
        "--seq-len",
        "8",
        "--batch-size",
        "2",
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--quiet",
        "--out",
        out,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("val_loss" not in r for r in rows)
    assert not (out / "best.json").exists() and (out / "report.html").exists()
    code, text, err = run_cli(capsys, "charlm", "sample", "--run", out, "--length", "10")
    assert code == 0 and text.strip("\n"), err
