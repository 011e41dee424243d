"""One module per analysis kind: `run(model, spec, progress) -> Result`, named by the
catalogue (`analyses.core.catalogue`) and imported only when a job runs.

`patching/` holds the engine shared by activation, direct-path and attribution patching;
`tokens` the tokenization and input checks every kind uses.
"""
from analyses.runtime.offline import ensure_offline_if_unreachable

ensure_offline_if_unreachable()  # before any kind imports transformers
