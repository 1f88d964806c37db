"""Decode-step weight matrices: exact float32, and packed in float16 for fbgemm."""

import pytest
import torch
import torch.nn.functional as F

from model.matmul import Matmul, half_matmul_available, half_matmul_usable

needs_fbgemm = pytest.mark.skipif(not half_matmul_available(), reason="this torch build has no fbgemm fp16 GEMM")


def _operands():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(6, 5, generator=generator), torch.randn(3, 5, generator=generator)  # [out_i, in]
    bias, x = torch.randn(9, generator=generator), torch.randn(4, 1, 5, generator=generator)
    return first, second, bias, x


def test_float32_matmul_is_the_stacked_linear():
    first, second, bias, x = _operands()
    stacked = torch.cat([first, second])  # [9, 5]
    torch.testing.assert_close(Matmul(first, second)(x), F.linear(x, stacked), rtol=1e-6, atol=1e-6)
    with_bias = Matmul(first, second, bias=bias)
    assert torch.equal(with_bias(x[:, 0]), torch.addmm(bias, x[:, 0], stacked.t().contiguous()))
    assert with_bias(x).shape == (4, 1, 9)


@needs_fbgemm
def test_half_matmul_multiplies_by_the_float16_rounded_weights():
    first, second, bias, x = _operands()
    rounded = torch.cat([first, second]).half().float()
    half = Matmul(first, second, bias=bias, half=True)(x)
    torch.testing.assert_close(half, F.linear(x, rounded, bias), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(half, Matmul(first, second, bias=bias)(x), rtol=1e-5, atol=1e-5)  # rounded weights


def test_half_matmul_is_for_float32_on_the_cpu_only():
    assert not half_matmul_usable("cpu", torch.bfloat16)
    assert not half_matmul_usable("meta", torch.float32)
    assert half_matmul_usable("cpu", torch.float32) == half_matmul_available()
