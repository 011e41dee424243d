"""The result of an analysis: tidy tables of plain CPU data, checked on creation."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .catalogue import CATALOGUE
from .spec import AnalysisSpec


@dataclass(frozen=True)
class Result:
    """What every analysis returns and the store keeps.

    `tables` maps a table name to a tidy (long) DataFrame whose columns the
    kind's catalogue entry declares; `meta` holds scalars worth showing
    beside them (baselines, model fingerprint, compute seconds).
    """

    spec: AnalysisSpec
    tables: dict[str, pd.DataFrame]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        kind = CATALOGUE[self.spec.kind]
        declared = kind.set_tables if self.spec.dataset is not None else kind.tables
        for name, frame in self.tables.items():
            if name not in declared:
                raise ValueError(f"{self.spec.kind} declares no table {name!r}")
            missing = set(declared[name]) - set(frame.columns)
            if missing:
                raise ValueError(f"table {name!r} lacks columns {sorted(missing)}")

    @property
    def kind(self) -> str:
        return self.spec.kind

    def to_document(self) -> dict:
        """The CLI's JSON shape: {"kind", "spec", "tables": {name: [row objects]}, "meta"}."""
        return {
            "kind": self.kind,
            "spec": dict(self.spec.items()),
            "tables": {name: frame.to_dict(orient="records") for name, frame in self.tables.items()},
            "meta": self.meta,
        }

    def figures(self, **view) -> dict:
        """The named plotly figures the app shows for this result (no Streamlit needed):
        the kind's figure function from the catalogue, imported on first use. `view`: what
        that function takes to choose a view (`positions=` for layer × position figures).
        Every figure has the workbench's template (`figures.layout.TEMPLATE`)."""
        from analyses.figures.layout import house_style

        pooled = CATALOGUE[self.kind].set_runner is not None  # one analysis of the whole set
        if self.spec.dataset is not None and not pooled:  # per-example results: means, intervals
            from analyses.figures import sets

            return house_style(sets.figures(self))
        return house_style(CATALOGUE[self.kind].figures_function()(self, **view))
