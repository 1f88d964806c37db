"""Weight matrices of the decode step: float32 stored input-major, or float16 packed for fbgemm.

A decode step multiplies a handful of rows by every weight matrix of the LM and the image head,
so on a CPU its matmuls are bound by reading the weights (the built-in model reads ~14 MB per
image token), not by arithmetic. fbgemm's fp16 GEMM (x86 CPUs) keeps a weight packed in
float16 and widens it in registers: half the bytes to read, while activations, biases and
accumulation stay float32, so the only change is the weights' rounding (relative error at most
2^-11). `Matmul(..., half=False)` is the exact float32 path; callers choose.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def input_major(*weights: torch.Tensor) -> torch.Tensor:
    """Linear weights [out_i, in] -> one [in, sum out_i] matrix, contiguous: `x @ w` is then a
    plain GEMM that streams the weight row by row (faster than `F.linear`'s transposed read
    for the few rows of a decode step)."""
    return torch.cat(weights).t().contiguous().detach()


@lru_cache(maxsize=None)
def half_matmul_available() -> bool:
    """Whether this torch build has fbgemm's fp16 GEMM (x86 builds do; ARM builds do not)."""
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(torch.ones(1, 1), None)
        torch.ops.quantized.linear_dynamic_fp16(torch.ones(1, 1), packed)
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return True


def half_matmul_usable(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Half-precision weights apply to float32 models on the CPU, where fbgemm is built in."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and half_matmul_available()


class Matmul:
    """x [..., in] -> x W^T + b [..., out] for Linear weights W [out_i, in] stacked along out.

    half=False: W stored input-major in float32 (`input_major`), bit for bit the plain matmul
    (`addmm` with a bias); half=True: W packed in float16 for fbgemm (`half_matmul_available`)."""

    def __init__(self, *weights: torch.Tensor, bias: torch.Tensor | None = None, half: bool = False):
        self.half = half
        bias = None if bias is None else bias.detach()
        if half:
            self.packed = torch.ops.quantized.linear_prepack_fp16(torch.cat(weights).detach().contiguous(), bias)
        else:
            self.weight, self.bias = input_major(*weights), bias  # [in, out], [out] or None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.half:
            return torch.ops.quantized.linear_dynamic_fp16(x, self.packed)
        if self.bias is None:
            return x @ self.weight
        flat = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)  # [rows, out]
        return flat.view(*x.shape[:-1], flat.shape[-1])
