"""Activation sparsity: how much of each MLP could be skipped, after Luo et al. 2025,
"Sparsing Law: Towards Large Language Models with Greater Activation Sparsity" (ICML;
code: thunlp/SparsingLaw). PPL-p% sparsity makes "a negligible activation" performance-aware
and activation-function-agnostic:

- a neuron's contribution to its MLP's output on a token is a_j · w_j (a_j: the activation
  entering the output projection, for a gated MLP act(gate) · up; w_j: its row of W_out);
- CETT(t), a layer's cumulative error of tail truncation, is the mean over tokens of the
  relative L2 error of its output when the neurons with |a_j|·||w_j|| < t are zeroed (`cett`);
- one CETT value is shared by all layers; each layer's threshold is where its CETT reaches that
  value on the dense run's activations (`cett.threshold_for_cett`);
- a binary search on that value (tolerance 0.001) finds where zeroing below every layer's
  threshold at once raises perplexity by p% (`search`); the share of neurons zeroed there,
  per token and layer, is the PPL-p% sparsity (1 − the activation ratio).

Package: `text` (what is read), `cett`, `forward` (dense and sparse runs), `measure` (one CETT
value end to end), `search`, `tables`, `analysis` (the kind's run).
"""
from analyses.kinds.sparsity.analysis import run, run_set

__all__ = ["run", "run_set"]
