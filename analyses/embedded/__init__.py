"""The embedded default model (`data/models/tiny-circuits`): the corpus it is trained on
(`corpus`, `lexicon`, `data`), its tokenizer and trainer (`tokenizer`, `train`;
`python -m analyses.embedded`), the measures of its behaviours (`measures`: one definition
each, shared by the trainer, the model card, its tests and the heads analysis), its card
(`card`) and the app's presets (`presets`)."""
from analyses.runtime.offline import ensure_offline_if_unreachable

ensure_offline_if_unreachable()  # before the trainer or tokenizer imports transformers
