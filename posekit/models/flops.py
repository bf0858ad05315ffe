"""Model size and cost, counted the way the pose papers report them.

"GFLOPs" in HRNet, DITN and most top-down pose papers are multiply-accumulates of the convolution
and linear layers (BN, activations, pooling, upsampling and additions are not counted) divided by
2**30: the reference ``get_model_summary`` of deep-high-resolution-net.pytorch sums
``weight.numel() * output_pixels`` per conv and prints ``flops_sum / 1024**3``. That gives 7.1 for
HRNet-W32 at 256x192. The count here comes from ``torch.utils.flop_counter.FlopCounterMode``, which
sees every convolution / matrix product actually executed, including the ones in functional code
(e.g. DITN's per-sample dynamic kernels), and reports 2 FLOPs per multiply-accumulate.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from posekit.errors import PosekitError

GIGA = 2 ** 30


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _run_counted(model: nn.Module, input_size: tuple[int, int], batch: int) -> FlopCounterMode:
    """Count one forward pass on the meta device: only shapes are propagated, so even a large
    model is counted in milliseconds and its weights are left untouched."""
    h, w = _check_size(input_size)
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in (*model.named_parameters(), *model.named_buffers())}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            functional_call(model, meta, (torch.zeros(batch, 3, h, w, device="meta"),), strict=False)
    finally:
        model.train(was_training)
    return counter


def count_macs(model: nn.Module, input_size: tuple[int, int] = (256, 192), batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on ``batch`` images of ``input_size`` (height, width)."""
    return _run_counted(model, input_size, batch).get_total_flops() // 2


def gflops(model: nn.Module, input_size: tuple[int, int] = (256, 192)) -> float:
    """The papers' "GFLOPs" for one image: conv/linear multiply-accumulates / 2**30."""
    return count_macs(model, input_size) / GIGA


def module_costs(model: nn.Module, input_size: tuple[int, int] = (256, 192),
                 prefix: str = "") -> dict[str, tuple[int, int]]:
    """(parameters, multiply-accumulates) of every direct child of the submodule at ``prefix``
    (dotted name; "" for the model itself), as in a per-module table such as DITN's Table 8.
    Operations run by the parent itself between its children appear under ``"(own)"``."""
    parent = model.get_submodule(prefix) if prefix else model
    counts = _run_counted(model, input_size, 1).get_flop_counts()
    root = type(model).__name__
    key = f"{root}.{prefix}" if prefix else root

    def macs(name: str) -> int:
        return sum(counts.get(name, {}).values()) // 2

    out = {name: (count_params(child), macs(f"{key}.{name}")) for name, child in parent.named_children()}
    own = macs(key) - sum(m for _, m in out.values())
    out["(own)"] = (count_params(parent) - sum(p for p, _ in out.values()), own)
    return out


def _check_size(input_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise PosekitError(f"input size must be (height, width), got {input_size!r}") from None
    if h < 1 or w < 1:
        raise PosekitError(f"input size must be positive, got {h}x{w}")
    return h, w
