"""Shared fixtures: tiny random-weight models of several architectures, and real fixtures.

Tests run offline: HF_HUB_OFFLINE is set here, before anything imports transformers
(it is read only at import time), so no test ever waits on the network.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# No background import of the model stack in AppTest runs: tests import transformers from
# their own threads, outside the lock the app's warm-up and every job share.
os.environ.setdefault("ANALYSES_APP_WARMUP", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


# --------------------------------------------------------------------------- tiny models

TINY_VOCAB = 320  # 256 byte symbols + a few merges + the special token
TINY_CTX = 128  # room for a needle prompt in the tiny, nearly character-level tokenizer
TINY_BOS = "<|endoftext|>"
TINY_ARCHS = ("gpt2", "llama", "neox", "qwen2")
_TINY_TEXT = [
    "Once upon a time there was a little girl named Lily.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The capital of France is Paris. The capital of Japan is Tokyo.",
    "def add(a, b): return a + b  # 123 456 789",
] * 20


def tiny_tokenizer():
    """A byte-level BPE trained in a few milliseconds: encodes any text, BOS = id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=[TINY_BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_TINY_TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=TINY_BOS, eos_token=TINY_BOS,
                                   unk_token=TINY_BOS, model_max_length=TINY_CTX,
                                   clean_up_tokenization_spaces=False)


def tiny_config(arch: str, vocab_size: int, n_layers: int = 2):
    """A tiny config of each architecture (2 layers unless asked); Llama and Qwen2 use
    grouped-query attention."""
    config = _tiny_config(arch, vocab_size)
    config.num_hidden_layers = n_layers  # GPT-2's n_layer is an alias of it
    return config


def _tiny_config(arch: str, vocab_size: int):
    import transformers as tf

    ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=vocab_size, n_positions=TINY_CTX, n_embd=32, n_layer=2,
                             n_head=4, **ids)
    if arch == "llama":
        return tf.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=TINY_CTX, **ids)
    if arch == "neox":  # partial rotary (a quarter of each head), as in Pythia
        return tf.GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=TINY_CTX, rotary_pct=0.25, **ids)
    if arch == "qwen2":  # biases on q, k, v
        return tf.Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=TINY_CTX, **ids)
    raise ValueError(f"no tiny config for {arch!r}; known: {TINY_ARCHS}")


def randomize_(model, seed: int = 0, scale: float = 0.2) -> None:
    """Draw every parameter at random, norms around 1, so logits are O(1) and a wrong
    mapping of any weight (biases included) shows up far above float32 noise."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * scale
            is_norm_gain = p.ndim == 1 and ("norm" in name or name.split(".")[-2].startswith("ln"))
            p.copy_(1.0 + noise if is_norm_gain and name.endswith("weight") else noise)


def save_tiny_model(arch: str, out: Path, seed: int = 0, n_layers: int = 2) -> Path:
    """Build, randomize and save a tiny model with its tokenizer as a Hugging Face dir."""
    import transformers as tf

    tokenizer = tiny_tokenizer()
    model = tf.AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer), n_layers))
    randomize_(model, seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def _tiny_model_builder(tiny_models_root):
    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            built[arch] = save_tiny_model(arch, tiny_models_root / arch)
        return built[arch]

    return build


@pytest.fixture
def model_roots(monkeypatch, tiny_models_root, tmp_path):
    """Let `analyses.models` load from the tiny models' folder and this test's `tmp_path`:
    sets ANALYSES_MODEL_ROOTS to those plus the default roots, for this test only."""
    from analyses.runtime import models

    monkeypatch.delenv(models.ROOTS_ENV, raising=False)
    roots = [tiny_models_root, tmp_path, *models.allowed_roots()]
    monkeypatch.setenv(models.ROOTS_ENV, os.pathsep.join(str(r) for r in roots))
    return roots


@pytest.fixture
def tiny_model_dir(_tiny_model_builder, model_roots):
    """`tiny_model_dir(arch) -> Path`: a saved tiny model of `arch` (one of TINY_ARCHS),
    built once per session, inside an allowed model root."""
    return _tiny_model_builder


@pytest.fixture
def tiny_gpt2_dir(tiny_model_dir) -> Path:
    return tiny_model_dir("gpt2")


@pytest.fixture
def tiny_llama_dir(tiny_model_dir) -> Path:
    return tiny_model_dir("llama")


@pytest.fixture
def tiny_neox_dir(tiny_model_dir) -> Path:
    return tiny_model_dir("neox")


@pytest.fixture
def tiny_qwen2_dir(tiny_model_dir) -> Path:
    return tiny_model_dir("qwen2")


@pytest.fixture
def store(tmp_path):
    """A DuckDB result store of this test's own (never data/cache.duckdb)."""
    from analyses.runtime.store import Store

    opened = Store(tmp_path / "cache.duckdb")
    yield opened
    opened.close()


@pytest.fixture
def private_cache(monkeypatch, tmp_path):
    """compute() stores its results: in this test's own DuckDB file, never data/cache.duckdb.
    A module opts in for every test with `pytestmark = pytest.mark.usefixtures("private_cache")`."""
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


@pytest.fixture(scope="module")
def embedded():
    """The embedded default model (loaded once; models.load caches it anyway)."""
    from analyses.runtime import models

    return models.load("default")


# --------------------------------------------------------------------------- real fixtures

@pytest.fixture(scope="session")
def stories260k_dir() -> Path:
    """Karpathy's stories260K llama2.c model (see its README), or a skip where it is absent."""
    folder = SHARED_FIXTURES / "stories260K"
    if not (folder / "stories260K.bin").is_file():
        pytest.skip("../shared/fixtures/stories260K is absent: this clone has no shared fixtures "
                    "folder beside it (tests never download it)")
    return folder
