"""Layers shared by the pose models: conv-BN-ReLU, per-sample (dynamic) convolution and deformable
convolution written with plain PyTorch ops (no compiled extension, exports to ONNX)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 bn: bool = True, relu: bool = True, bias: bool | None = None) -> nn.Sequential:
    """Conv with 'same' padding, then optional BN and ReLU; the conv has a bias only without BN
    unless ``bias`` says otherwise."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                         bias=(not bn) if bias is None else bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def dynamic_depthwise_conv2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter every channel of every sample with its own kernels, 'same' padding, stride 1, no bias.

    ``x`` (N, C, H, W), ``kernels`` (N, C*M, kh, kw) with odd kh, kw: output channel o is input
    channel o // M filtered with kernel o (a depthwise convolution with channel multiplier M, per
    sample). Eager mode folds the batch into the channel axis and runs one grouped convolution
    (``groups = N*C``), the fastest form on CPU and GPU. A grouped conv's group count is a constant
    of an ONNX graph, so while exporting the batch goes into the conv's batch axis instead: a fixed
    one-hot convolution gathers every pixel's kh*kw neighbourhood (im2col) and one batched matrix
    product weights it with the kernels. The graph keeps a dynamic batch with a few ops where kh*kw
    shifted multiply-adds would need a hundred (ONNX Runtime, DITN-W32 at 256x192, batch 1: the
    head's 14.5 ms become 5.6)."""
    n, c, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    if (kernels.dim() != 4 or kernels.shape[0] != n or kernels.shape[1] % c or kh % 2 == 0
            or kw % 2 == 0):
        raise PosekitError(f"dynamic kernels of shape {tuple(kernels.shape)} do not fit features "
                           f"{tuple(x.shape)} (need (N, C*M, odd, odd))")
    multiplier = kernels.shape[1] // c
    if torch.onnx.is_in_onnx_export():
        one_hot = np.eye(kh * kw, dtype=np.float32).reshape(kh * kw, 1, kh, kw)  # numpy: a graph constant
        taps = torch.from_numpy(one_hot).to(x)
        patches = F.conv2d(x.flatten(0, 1).unsqueeze(1), taps, padding=(kh // 2, kw // 2))  # (N*C, kh*kw, H, W)
        weights = kernels.flatten(2).unflatten(1, (c, multiplier)).flatten(0, 1)          # (N*C, M, kh*kw)
        out = torch.matmul(weights, patches.flatten(2))                                   # (N*C, M, H*W)
        return out.reshape(n, c * multiplier, h, w)
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c * multiplier, 1, kh, kw),
                   padding=(kh // 2, kw // 2), groups=n * c)
    return out.reshape(n, c * multiplier, h, w)


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride: int | tuple[int, int] = 1,
                  padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """(Modulated) deformable convolution (DCNv1; DCNv2 when ``mask`` is given) via ``grid_sample``.

    Same contract as ``torchvision.ops.deform_conv2d`` and mmcv's DCN, so their weights and offset
    predictors carry over: ``offset`` is (N, 2*G*kh*kw, Ho, Wo) holding, for offset group g and kernel
    tap k = i*kw + j (row-major), the row shift at channel 2*(g*kh*kw + k) and the column shift at the
    next channel; ``mask`` is (N, G*kh*kw, Ho, Wo). G (offset groups) divides the input channels.
    Tap k of output pixel (y, x) samples the input at
    (y*stride - pad + i*dilation + dy, x*stride - pad + j*dilation + dx) with bilinear interpolation;
    corners outside the image count as zero. ``weight`` (Cout, Cin/groups, kh, kw); conv groups are
    inferred from its second dimension."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, cin, h, w = x.shape
    cout, cin_per_group, kh, kw = weight.shape
    if cin % cin_per_group or cout % (cin // cin_per_group):
        raise PosekitError(f"deform_conv2d: weight {tuple(weight.shape)} does not fit {cin} input channels")
    groups = cin // cin_per_group
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = kh * kw
    if offset.dim() != 4 or offset.shape[0] != n or offset.shape[2:] != (ho, wo) or offset.shape[1] % (2 * taps):
        raise PosekitError(f"deform_conv2d: offset {tuple(offset.shape)} must be (N, 2*G*{taps}, {ho}, {wo})")
    offset_groups = offset.shape[1] // (2 * taps)
    if cin % offset_groups:
        raise PosekitError(f"deform_conv2d: {offset_groups} offset groups do not divide {cin} channels")
    if mask is not None and tuple(mask.shape) != (n, offset_groups * taps, ho, wo):
        raise PosekitError(f"deform_conv2d: mask {tuple(mask.shape)} must be "
                           f"({n}, {offset_groups * taps}, {ho}, {wo})")

    dtype, device = x.dtype, x.device
    base_y = torch.arange(ho, dtype=dtype, device=device) * sh - ph
    base_x = torch.arange(wo, dtype=dtype, device=device) * sw - pw
    tap_y = (torch.arange(kh, dtype=dtype, device=device) * dh).repeat_interleave(kw)
    tap_x = (torch.arange(kw, dtype=dtype, device=device) * dw).repeat(kh)
    off = offset.reshape(n, offset_groups, taps, 2, ho, wo)
    sample_y = base_y.view(1, 1, 1, ho, 1) + tap_y.view(1, 1, taps, 1, 1) + off[:, :, :, 0]
    sample_x = base_x.view(1, 1, 1, 1, wo) + tap_x.view(1, 1, taps, 1, 1) + off[:, :, :, 1]
    # grid_sample with align_corners=False: pixel p sits at normalised (2p + 1)/size - 1.
    grid = torch.stack(((2 * sample_x + 1) / w - 1, (2 * sample_y + 1) / h - 1), dim=-1)
    grid = grid.reshape(n * offset_groups, taps * ho, wo, 2)
    sampled = F.grid_sample(x.reshape(n * offset_groups, cin // offset_groups, h, w), grid,
                            mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(n, offset_groups, cin // offset_groups, taps, ho, wo)
    if mask is not None:
        sampled = sampled * mask.reshape(n, offset_groups, 1, taps, ho, wo)
    columns = sampled.reshape(n, groups, cin_per_group * taps, ho * wo)
    kernel = weight.reshape(groups, cout // groups, cin_per_group * taps)
    out = torch.einsum("gok,ngkp->ngop", kernel, columns).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """Deformable conv layer holding the weights; offsets (and the DCNv2 mask) come from the caller."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise PosekitError(f"DeformConv2d: groups={groups} must divide {in_channels} and {out_channels}")
        self.stride, self.dilation = stride, dilation
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x, offset, mask=None):
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
