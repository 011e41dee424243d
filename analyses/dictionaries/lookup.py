"""A spec's `dictionary=` field -> the dictionary it names, checked against the model it runs on
(steering's and attribution patching's view of `readout.load_for`, with the folder it came from).

The field holds a site name (`blocks.1.hook_resid_post`: the dictionary for that site under
`data/dictionaries/<model>/`, where the shipped ones and `dictionaries train`'s default output
live) or a local directory in sparsify's or SAELens's format. A dictionary trained on other
weights (its `model_fingerprint` differs from the model's) or of another width is refused,
naming the field: its latents would mean nothing on this model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyses.core.errors import SpecError, UserError
from analyses.dictionaries import readout, reference, sites
from analyses.dictionaries.coder import SparseCoder


@dataclass(frozen=True)
class Dictionary:
    site: sites.Site
    coder: SparseCoder  # float32, on the model's device
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.site.name} ({self.coder.num_latents} latents, k {self.coder.cfg.k})"


def is_site(text: str) -> bool:
    try:
        sites.parse(text)
    except UserError:
        return False
    return True


def load(model, text: str, field: str = "dictionary") -> Dictionary:
    """The dictionary `text` names for `model` (a LoadedModel), on the model's device: found
    and checked as every kind finds it (`reference.resolve`: a site's folder, or a directory
    inside the allowed folders; `readout.load_for`: its site, width and training weights)."""
    try:
        found = readout.load_for(model, model.ref, text)
    except SpecError:
        raise
    except UserError as err:
        raise SpecError(field, str(err).removeprefix("dictionary: ")) from None
    return Dictionary(site=found.site, coder=found.coder, folder=reference.resolve(model.ref, text))
