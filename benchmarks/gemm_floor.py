"""How close the NumPy backend's best-300s step is to its matrix products' floor.

A best-300s step (embedding 128 -> gru_reset_after H=256 -> readout, B = T = 64, dropout 0.05
before the readout, none on the embedding) runs as two row blocks of 32, one per core, each with
single-threaded OpenBLAS.  This script times, in one process with the training loop's malloc
setting (``keep_freed_blocks``):

- ``block_ms``: one block's ``loss_and_grads`` alone on one core;
- ``two_blocks_ms``: both blocks at once in two threads (what a step's forward and backward take);
- ``gemm_ms``: each of the block's matrix products alone, at its shapes, summed: the per-step
  ``[32, 256] @ [256, 768]`` and ``[32, 768] @ [768, 256]`` 64 times each, and the whole-sequence
  input, readout and weight-gradient products once.  With the embedding folded into the input
  weights (no dropout on it, as the preset), the input side is the table ``[65, 128] @ [128, 768]``,
  its gradient over the block's ids ``[65, 2048] @ [2048, 768]`` and two table-sized products;
  ``--input-dropout`` times the unfolded step (its three ``[2048, 128]``-by-``768`` products).

``gemm_share`` = gemm_ms / block_ms: what the arithmetic the products must do costs, at OpenBLAS's
single-core rate; the rest is element-wise work, calls and copies.  ``contention`` =
two_blocks_ms / block_ms: what the two threads cost each other (the interpreter lock, shared cache
and memory bandwidth).  Prints one JSON object.

    python benchmarks/gemm_floor.py [--repeats 30] [--input-dropout]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnnlab import blas
from rnnlab.backends import numpy_backend
from rnnlab.cells import ModelSpec, init_params
from rnnlab.config import PRESETS
from rnnlab.dropout import dropout_masks
from rnnlab.memory import keep_freed_blocks

V, ROWS, T = 65, 32, 64
SETTINGS = PRESETS["best-300s"].settings
H, EMBED, DROPOUT = SETTINGS["hidden_size"], SETTINGS["embed_size"], SETTINGS["dropout"]


def best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls after two warm-up calls, in milliseconds."""
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def gemm_ms(repeats: int, folded: bool) -> dict[str, float]:
    """Each matrix product of one block's step, alone at its shapes (float32, one thread)."""
    rng = np.random.default_rng(0)

    def product(m: int, k: int, n: int, count: int, transpose_left: bool = False):
        left = rng.standard_normal((k, m) if transpose_left else (m, k)).astype(np.float32)
        right = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        operand = left.T if transpose_left else left

        def run():
            for _ in range(count):
                np.matmul(operand, right, out=out)

        return best_ms(run, max(3, repeats // 3))

    N, G = T * ROWS, 3 * H
    shared = {
        "recurrent_forward [32,256]@[256,768] x64": product(ROWS, H, G, T),
        "recurrent_backward [32,768]@[768,256] x64": product(ROWS, G, H, T),
        "readout [2048,256]@[256,65]": product(N, H, V, 1),
        "readout_input_grad [2048,65]@[65,256]": product(N, V, H, 1),
        "readout_weight_grad [256,2048]@[2048,65]": product(H, N, V, 1, transpose_left=True),
        "recurrent_weight_grad [256,2048]@[2048,768]": product(H, N, G, 1, transpose_left=True),
    }
    if folded:
        return {
            **shared,
            "input_table [65,128]@[128,768]": product(V, EMBED, G, 1),
            "input_table_grad [65,2048]@[2048,768]": product(V, N, G, 1),
            "input_weight_grad [128,65]@[65,768]": product(EMBED, V, G, 1, transpose_left=True),
            "embed_grad [65,768]@[768,128]": product(V, G, EMBED, 1),
        }
    return {
        **shared,
        "input_projection [2048,128]@[128,768]": product(N, EMBED, G, 1),
        "input_weight_grad [128,2048]@[2048,768]": product(EMBED, N, G, 1, transpose_left=True),
        "input_grad [2048,768]@[768,128]": product(N, G, EMBED, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--input-dropout", action="store_true", help="drop the embedding too (the unfolded step, as before)"
    )
    args = parser.parse_args()
    input_dropout = args.input_dropout or SETTINGS.get("input_dropout", True)
    keep_freed_blocks()
    if not blas.can_pin_threads():
        raise SystemExit("NumPy's BLAS has no per-thread thread count: the batch split does not run here")
    spec = ModelSpec("gru_reset_after", V, H, V, 1, "embedding", embed_size=EMBED)
    params = init_params(spec, np.random.default_rng(0), "default", np.float32)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, V, (2 * ROWS, T)), rng.integers(0, V, (2 * ROWS, T))
    carry = numpy_backend.init_carry(spec, ROWS, np.float32)
    masks = [dropout_masks(spec, DROPOUT, rng, ROWS, T, input_dropout=input_dropout) for _ in range(2)]

    def block(index: int):
        blas.one_blas_thread_here()
        rows = slice(index * ROWS, (index + 1) * ROWS)
        with np.errstate(over="ignore", invalid="ignore"):
            return numpy_backend.loss_and_grads(
                params, spec, carry, inputs[rows], targets[rows], "cross_entropy", "mean", masks[index], 0.5
            )

    pool = ThreadPoolExecutor(2)
    alone = best_ms(lambda: pool.submit(block, 0).result(), args.repeats)
    both = best_ms(lambda: list(pool.map(block, (0, 1))), args.repeats)
    products = pool.submit(gemm_ms, args.repeats, not input_dropout).result()  # a thread with one BLAS thread
    total = sum(products.values())
    print(
        json.dumps(
            {
                "shape": {"rows_per_block": ROWS, "seq_len": T, "hidden": H, "embed": EMBED, "vocab": V},
                "embedding_folded": not input_dropout,
                "block_ms": round(alone, 2),
                "two_blocks_ms": round(both, 2),
                "gemm_ms": round(total, 2),
                "gemm_share": round(total / alone, 3),
                "contention": round(both / alone, 3),
                "products_ms": {k: round(v, 2) for k, v in products.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
