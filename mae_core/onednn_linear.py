"""A CPU fast path for fp32 `nn.Linear`: oneDNN's GEMM instead of the BLAS one.

On CPUs where torch's BLAS (MKL) does not pick its widest vector kernels (AMD Zen here:
about 180 GFLOP/s on two cores) oneDNN, which torch also ships, runs the same fp32
products at about twice that. Forward and both backward products go through oneDNN;
anything else (GPU, autocast, other dtypes, a torch without the op) uses `F.linear`.
Parameter names and values are untouched, so checkpoints do not notice.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

_OP = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def available() -> bool:
    return _OP is not None and torch.backends.mkldnn.is_available()


def _mm(x2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return _OP(x2d, weight, bias, "none", [], "")


class _OneDnnLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _mm(x.reshape(-1, x.shape[-1]), weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm(g, weight.t(), None).view(x.shape)
        if ctx.needs_input_grad[1]:
            gw = _mm(g.t(), x.reshape(-1, x.shape[-1]).t().contiguous(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


class OneDnnLinear(nn.Linear):
    """`nn.Linear` whose fp32 CPU products run on oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled("cpu") or not available()):
            return F.linear(x, self.weight, self.bias)
        return _OneDnnLinearFn.apply(x, self.weight, self.bias)


def use_onednn_linears(model: nn.Module) -> nn.Module:
    """Switch every plain `nn.Linear` in `model` to `OneDnnLinear` in place (no-op without oneDNN)."""
    if available():
        for m in model.modules():
            if type(m) is nn.Linear:
                m.__class__ = OneDnnLinear
    return model
