"""The activations of a TopK coder's chosen latents, with a gradient that touches only their
encoder rows.

Training needs gradients of the k chosen activations a token, not of all `latent` of them.
Autograd through the dense `ReLU(x @ W.T + b)` spends a [latent, batch] x [batch, d_in] product
(and a [batch, latent] one for x) on a gradient that is zero outside the chosen entries.
Here the values come from the dense pass the TopK choice needed anyway (no second
computation), and the backward scatters each chosen entry's gradient to its own row:
batch * k * d_in work. sparsify's fused encoder does the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class ChosenActs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Float[Tensor, "batch d_in"], weight: Float[Tensor, "latent d_in"],
                bias: Float[Tensor, " latent"], indices: Int[Tensor, "batch k"],
                values: Float[Tensor, "batch k"]) -> Float[Tensor, "batch k"]:
        ctx.save_for_backward(x, weight, indices, values)
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Float[Tensor, "batch k"]):
        x, weight, indices, values = ctx.saved_tensors
        grad = grad * (values > 0)  # ReLU's gradient (0 where the pre-activation was clipped)
        flat = indices.reshape(-1)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # sum_k grad_k * W[index_k]
            grad_x = F.embedding_bag(indices, weight, per_sample_weights=grad, mode="sum")
        if ctx.needs_input_grad[1]:
            per_row = (grad[:, :, None] * x[:, None, :]).reshape(-1, x.shape[-1])  # [batch * k, d_in]
            grad_weight = torch.zeros_like(weight).index_add_(0, flat, per_row)
        if ctx.needs_input_grad[2]:
            grad_bias = weight.new_zeros(weight.shape[0]).index_add_(0, flat, grad.reshape(-1))
        return grad_x, grad_weight, grad_bias, None, None


def chosen_acts(x: Float[Tensor, "batch d_in"], weight: Float[Tensor, "latent d_in"], bias: Float[Tensor, " latent"],
                indices: Int[Tensor, "batch k"], values: Float[Tensor, "batch k"]) -> Float[Tensor, "batch k"]:
    """`values` (= ReLU(x @ weight.T + bias) at `indices`, computed without gradient) carrying
    that expression's gradient to x, weight and bias, scattered to the chosen rows only."""
    return ChosenActs.apply(x, weight, bias, indices, values)
