"""Circuit discovery over the graph of edges between components.

- `graph`: the components (senders: the embeddings, each head's output, each MLP's output;
  receivers: each head's q/k/v input, each MLP's input, the logits) and which edges exist;
- `activations`: the senders' outputs and the metric's gradient at every receiver's input,
  read with TransformerLens's per-head hooks;
- `scores`: edge attribution, EAP (Syed et al. 2023) and EAP-IG (Hanna et al. 2024);
- `runs`: the circuit run, where each receiver reads some senders from one run and the
  rest from another (faithfulness; exact single-edge patching), many edge sets per pass.
"""
