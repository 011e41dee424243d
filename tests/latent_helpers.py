"""Numpy re-derivations of a dictionary's code and decoding, and a site's values, for the
tests of interventions and attribution on latents (independent of `SparseCoder.encode`)."""
import numpy as np


def numpy_pursuit_code(W_dec: np.ndarray, b_dec: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """The dense code of k greedy non-negative matching-pursuit steps over W_dec's rows (a
    latent taken twice sums its activations): [pos, latent]."""
    code, residual = np.zeros((len(x), len(W_dec))), x - b_dec
    rows = np.arange(len(x))
    for _ in range(k):
        scores = residual @ W_dec.T
        best = scores.argmax(axis=1)
        value = np.maximum(scores[rows, best], 0.0)
        code[rows, best] += value
        residual = residual - value[:, None] * W_dec[best]
    return code


def numpy_code(coder, x: np.ndarray) -> np.ndarray:
    """The dense code of x [pos, d_in] (TopK, or a matching pursuit's), by numpy alone: [pos, latent]."""
    if coder.cfg.encoding == "matching_pursuit":
        return numpy_pursuit_code(coder.W_dec.detach().double().numpy(), coder.b_dec.detach().double().numpy(),
                                  x, coder.cfg.k)
    w_enc, b_enc = coder.encoder.weight.detach().double().numpy(), coder.encoder.bias.detach().double().numpy()
    b_dec = coder.b_dec.detach().double().numpy()
    pre = np.maximum((x - b_dec if coder.cfg.centers_input else x) @ w_enc.T + b_enc, 0.0)
    code = np.zeros_like(pre)
    top = np.argsort(-pre, axis=-1, kind="stable")[:, : coder.cfg.k]
    np.put_along_axis(code, top, np.take_along_axis(pre, top, -1), -1)
    return code


def numpy_decode(coder, code: np.ndarray) -> np.ndarray:
    return code @ coder.W_dec.detach().double().numpy() + coder.b_dec.detach().double().numpy()


def site_value(bridge, site, tokens, hook: str) -> np.ndarray:
    """The value at `hook` (the site's input or output hook) of one prompt, [pos, d_in] (heads flattened)."""
    _, cache = bridge.run_with_cache(tokens, names_filter=[hook])
    value = cache[hook][0]
    return (value.flatten(-2) if value.ndim == 3 else value).double().numpy()
