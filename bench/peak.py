"""What the machine can do, for the benches' "fraction of peak": matmul GFLOPS measured in the same run, and the
FLOPs a transformer spends per token.

A rate alone says little on machines that differ (AVX2 only vs AVX512-BF16, 2 cores vs 16); a rate divided by
the same machine's measured matmul throughput says how much of the hardware a hot path uses.
"""

from __future__ import annotations

import time


def matmul_gflops(dtype_name: str = "float32", size: int = 1024, seconds: float = 1.0) -> float:
    """Square matmuls in torch's current thread setting, for about `seconds`."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def decoder_flops(config, tokens: int, context: float, head_tokens: int) -> float:
    """FLOPs of `tokens` tokens through a decoder, each attending to `context` positions on average, of which
    `head_tokens` also go through the LM head: 2 x body weights per token, 4 x layers x width x context for
    attention, 2 x vocabulary x width per LM-head token."""
    width, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = width // heads
    per_layer = width * (width + 2 * kv_heads * head_dim) + width * width + 3 * width * config.intermediate_size
    return (2 * layers * per_layer * tokens + 4 * layers * width * context * tokens + 2 * vocab * width * head_tokens)


def peak_line(flops: float, seconds: float, peak_gflops: float, label: str) -> str:
    achieved = flops / seconds / 1e9
    return f"{achieved:.0f} GFLOPS = {achieved / peak_gflops:.0%} of measured {label} matmul ({peak_gflops:.0f})"
