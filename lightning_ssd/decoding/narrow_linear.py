"""A CPU kernel choice for the verification pass: linear layers over a few rows as W @ x^T.

On CPU, `F.linear` over a handful of rows (the d + 1 tokens of a verification pass) takes a GEMM path that costs
2-3x a single-row pass, although both are bound by reading the same weights; the same product written as
(W @ x^T)^T costs about 1.2x (measured with MKL on this project's CPUs: 1024 x 2816 weights, 5 rows: 1.44 ms vs
0.71 ms, 1 row: 0.58 ms either way). Verification uses it while it runs, for linear layers of at least
`MIN_WEIGHTS` weights; the single-token passes of drafting and of plain greedy decoding are unaffected.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

MAX_ROWS = 32
# Below about a million weights the extra reshapes cost more than the kernel choice saves (measured: 128 x 384 and
# 256 x 768 weights are 5-15% slower through this path, 1024 x 2816 weights 40% faster at 5 rows).
MIN_WEIGHTS = 1 << 20


def _narrow_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    if x.device.type != "cpu" or rows > MAX_ROWS or rows < 2:
        return F.linear(x, self.weight, self.bias)
    # Both layouts matter: W @ (a transposed view of row-major x) is the fast kernel; W @ (a row-major x^T) is not.
    flat = x.reshape(rows, x.shape[-1]).contiguous()
    out = (self.weight @ flat.T).T.contiguous()
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], self.out_features)


def linear_modules(modules: Iterable[nn.Module], min_weights: int = MIN_WEIGHTS) -> list[nn.Linear]:
    """The linear layers inside `modules` large enough for the narrow path to pay off."""
    return [
        m for module in modules for m in module.modules()
        if isinstance(m, nn.Linear) and m.weight.numel() >= min_weights
    ]


@contextmanager
def narrow_linear(linears: list[nn.Linear], enabled: bool = True) -> Iterator[None]:
    """Within the block, `linears` compute few-row inputs on CPU as (W @ x^T)^T."""
    if not enabled:
        yield
        return
    for m in linears:
        m.forward = types.MethodType(_narrow_forward, m)
    try:
        yield
    finally:
        for m in linears:
            del m.forward
