"""The workbench's headless package: `from analyses import AnalysisSpec, compute`.

    spec = AnalysisSpec.from_query("kind=logit_lens&prompt=Hello")
    result = compute(spec)        # Result: .tables (tidy DataFrames), .meta, .figures()

Subpackages by concern:
    core/      torch-free: the spec, the catalogue of kinds, results, errors, progress
    kinds/     one module per analysis kind; patching/ holds the shared patching engine
    runtime/   model references and loading, execute(), the workers, the store, compute()
    embedded/  the embedded default model: its corpus, trainer, measures, card, presets
    figures/   plotly figures from a result's tables (no Streamlit)

Names are imported on first use, so `from analyses import AnalysisSpec` costs no torch.
"""
from importlib import import_module

_EXPORTS = {
    "AnalysisSpec": "analyses.core.spec",
    "Result": "analyses.core.result",
    "UserError": "analyses.core.errors",
    "SpecError": "analyses.core.errors",
    "ModelError": "analyses.core.errors",
    "compute": "analyses.runtime.service",
    "figures_for": "analyses.figures",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analyses' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
