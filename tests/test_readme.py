"""The README's Python and ONNX examples run as written, and its links and commands hold.

The ```python blocks are executed in order in one namespace, in a fresh directory holding an
``input.txt``; the ``rnnlab export`` line of the ONNX section runs through the command line
before the ONNX block. What they print is checked for the numbers they promise.
"""

import re
from pathlib import Path

from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def shakespeare_like(lines: int = 400) -> str:
    """Text in the README's examples' spirit: speakers (ROMEO among them) and their lines."""
    import numpy as np

    rng = np.random.default_rng(0)
    speakers = ["ROMEO", "JULIET", "MERCUTIO", "NURSE"]
    words = "the love of my heart is a light that breaks on yonder window and the night".split()
    out = []
    for _ in range(lines):
        out.append(f"{speakers[rng.integers(len(speakers))]}:")
        out.append(" ".join(words[i] for i in rng.integers(0, len(words), 8)).capitalize() + ".")
    return "\n".join(out) + "\n"


def test_the_readme_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.txt").write_text(shakespeare_like(), encoding="utf-8")
    python = blocks("python")
    assert len(python) == 2, "the README has a Python block and an ONNX block"
    namespace = {}
    exec(compile(python[0], "README.md (Python)", "exec"), namespace)
    printed = capsys.readouterr().out.split("\n", 1)
    assert 0 < float(printed[0]) < 4.0  # validation nats/char of a small model
    sample = printed[1][:100]  # the 100 characters after the prime
    assert len(sample) == 100 and set(sample) <= set(shakespeare_like())
    skill, interval = namespace["fc"].evaluate()["skill"], namespace["fc"].predict()["interval_80"]
    assert -1 < skill < 1 and interval[0] < interval[1]
    assert namespace["logits"].shape[:2] == (1, 5)

    export = [line for block in blocks("sh") for line in block.splitlines() if line.startswith("rnnlab export")]
    assert len(export) == 1
    assert main(export[0].split()[1:]) == 0
    exec(compile(python[1], "README.md (ONNX)", "exec"), namespace)
    assert namespace["logits"].shape == (1, 6, len(namespace["vocab"]))


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= 250
    for command in ("make demo", "make test", "make docs"):
        assert command in README
    # every benchmark a result row names exists
    for script in set(re.findall(r"benchmarks/[a-z_]+\.py", README)):
        assert (ROOT / script).exists(), script
