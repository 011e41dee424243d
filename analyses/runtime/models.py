"""Model references -> TransformerBridge: resolve, fingerprint, load (with a small LRU).

A *reference* is what a user types in a link or on the command line:

    default, tiny-circuits         an embedded model: a Hugging Face dir under data/models/
    gpt2, EleutherAI/pythia-70m    a Hugging Face hub id (from the local cache when offline)
    ./my-model, /abs/path/dir      a local Hugging Face-format directory (holds config.json)
    ../shared/fixtures/x/m.bin     a llama2.c checkpoint, converted in memory (see llama2c.py)

`resolve(ref)` says which of these a reference is without loading anything, and refuses
paths outside `allowed_roots()` and URLs. `fingerprint(ref)` hashes the model's content —
config, weights and tokenizer files, or the hub snapshot's commit — so a result cached
under one fingerprint can never be served for different weights that happen to share a
name. `load(ref)` returns a `LoadedModel`: a TransformerBridge in eval mode on the chosen
device and dtype, with that fingerprint; the last few loads are kept in memory.

Every failure a user can cause is a `ModelError` whose message says what was tried and
what to do. Offline (`HF_HUB_OFFLINE=1`, set by `runtime/offline.py` when the hub is
unreachable) an uncached hub id fails at once instead of retrying the network.

Heavy imports (torch, transformers, transformer_lens) happen inside `load`, so resolving,
fingerprinting and listing models stay fast.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyses.core.errors import ModelError
from analyses.runtime import model_policy
from analyses.runtime.offline import ensure_offline_if_unreachable

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_ROOT = REPO_ROOT / "data" / "models"
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"  # the project's test fixtures
DEFAULT_MODEL = "tiny-circuits"
ROOTS_ENV = "ANALYSES_MODEL_ROOTS"  # os.pathsep-separated; replaces the default roots

SOURCES = ("embedded", "huggingface", "local_dir", "llama2c")
DTYPES = ("float32", "bfloat16", "float16")
LRU_SIZE = 3  # loaded bridges kept in memory; a GPT-2-small bridge is ~0.5 GB in fp32

# Files of a Hugging Face directory whose bytes decide what the model computes. Logs,
# READMEs and model cards are left out: rewriting them must not invalidate cached results.
CONTENT_PATTERNS = (
    "config.json", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.index.json",
    "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "added_tokens.json",
    "*.model", "*.tiktoken",
)
_HASH_CHUNK = 1 << 20
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$")


# --------------------------------------------------------------------------- resolving

@dataclass(frozen=True)
class Resolved:
    """Where a reference points, decided without loading anything."""

    source: str  # one of SOURCES
    path: Path | None = None  # the model directory or .bin file; None for a hub id
    hub_id: str | None = None  # set only when source == "huggingface"

    @property
    def location(self) -> str:
        return self.hub_id if self.hub_id is not None else str(self.path)


def allowed_roots() -> list[Path]:
    """Folders a path reference may point into: `$ANALYSES_MODEL_ROOTS` when set, else the
    embedded models, the current directory and the project's shared test fixtures."""
    configured = os.environ.get(ROOTS_ENV, "").strip()
    if configured:
        roots = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    else:
        roots = [EMBEDDED_ROOT, Path.cwd(), SHARED_FIXTURES]
    return [r.resolve() for r in roots]


def resolve(ref: str) -> Resolved:
    """Classify a reference: embedded name, local path (dir or .bin) or hub id."""
    ref = (ref or "").strip()
    if not ref:
        raise ModelError("empty model reference: give `default`, an embedded name, a Hugging "
                         "Face id, a local directory or a llama2.c .bin file")
    if any(ord(c) < 32 or ord(c) == 127 for c in ref):
        raise ModelError(f"{ref!r}: a model reference cannot contain control characters")
    if _URL.match(ref):
        raise ModelError(f"{ref!r}: URLs are not model references; download the model and pass "
                         f"its directory inside one of the allowed folders: {_roots_text()}")
    if ref == "default":
        return _embedded(DEFAULT_MODEL, missing_ok=False)
    embedded = _embedded(ref, missing_ok=True) if _is_plain_name(ref) else None
    if embedded is not None:
        return embedded
    if _looks_like_path(ref):
        return _resolve_path(ref)
    if not _HUB_ID.match(ref) or "--" in ref or ".." in ref:
        raise ModelError(f"{ref!r} is neither an embedded model ({_embedded_text()}), a path, "
                         "nor a valid Hugging Face id like `gpt2` or `EleutherAI/pythia-70m`")
    return Resolved("huggingface", hub_id=ref)


def _is_plain_name(ref: str) -> bool:
    return "/" not in ref and "\\" not in ref and ref not in (".", "..")


def _embedded(name: str, missing_ok: bool) -> Resolved | None:
    folder = EMBEDDED_ROOT / name
    if (folder / "config.json").is_file():
        return Resolved("embedded", path=folder.resolve())
    if missing_ok:
        return None
    raise ModelError(f"the embedded default model is missing ({folder} has no config.json): "
                     "train it with `python -m analyses.embedded`, or pass another model")


def _looks_like_path(ref: str) -> bool:
    """Paths start with `.`, `/` or `~`, end in `.bin`, use `\\`, or have more than one `/`.
    An `owner/name` reference is a hub id unless such a folder exists here."""
    if ref.startswith((".", "/", "~")) or ref.endswith(".bin") or "\\" in ref:
        return True
    if os.sep in ref or (os.altsep and os.altsep in ref):
        return not _HUB_ID.match(ref) or (Path.cwd() / ref).exists()
    return False


def _resolve_path(ref: str) -> Resolved:
    path = Path(ref).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()  # follows links and ..
    roots = allowed_roots()
    if not any(path.is_relative_to(root) for root in roots):
        raise ModelError(f"{ref!r} lies outside the folders models may be loaded from: "
                         f"{_roots_text(roots)} (set {ROOTS_ENV} to change them)")
    if not path.exists():
        raise ModelError(f"{ref!r}: no such file or directory ({path})")
    if path.is_dir():
        if (path / "config.json").is_file():
            return Resolved("local_dir", path=path)
        raise ModelError(f"{ref!r} is a directory but not a Hugging Face model: it has no "
                         "config.json" + _bin_hint(path))
    if path.suffix == ".bin":
        if (path.parent / "config.json").is_file():
            raise ModelError(f"{ref!r} is a weight file of a Hugging Face model: pass its "
                             f"directory ({path.parent}) instead")
        from analyses.runtime import llama2c

        llama2c.read_config(path)  # 28 bytes: refuses what is not a v0 checkpoint
        return Resolved("llama2c", path=path)
    raise ModelError(f"{ref!r} is a file but not a model: give a Hugging Face model directory "
                     "(with config.json) or a llama2.c .bin checkpoint")


def _bin_hint(folder: Path) -> str:
    bins = sorted(folder.glob("*.bin"))[:3]
    return f"; for a llama2.c checkpoint pass the .bin file itself ({bins[0]})" if bins else ""


def _roots_text(roots: list[Path] | None = None) -> str:
    return ", ".join(str(r) for r in (roots if roots is not None else allowed_roots()))


def _embedded_names() -> list[str]:
    if not EMBEDDED_ROOT.is_dir():
        return []
    return sorted(p.name for p in EMBEDDED_ROOT.iterdir() if (p / "config.json").is_file())


def _embedded_text() -> str:
    names = _embedded_names()
    return ", ".join(names) if names else f"none in {EMBEDDED_ROOT}"


# --------------------------------------------------------------------------- the hub cache

def _hub_offline() -> bool:
    ensure_offline_if_unreachable()
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return flag in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def _hub_cache_dir() -> Path:
    ensure_offline_if_unreachable()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)  # read at call time: tests may point it elsewhere


def _cached_snapshot(hub_id: str) -> Path | None:
    """The local snapshot folder of a hub model (the `main` ref, else the newest), if any."""
    ensure_offline_if_unreachable()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json", cache_dir=_hub_cache_dir())
    if isinstance(found, str):
        return Path(found).parent  # .../snapshots/<commit>/config.json
    snapshots = _hub_cache_dir() / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    candidates = [p for p in snapshots.glob("*") if (p / "config.json").is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def cached_snapshot(hub_id: str) -> Path | None:
    """The local snapshot folder of a hub model, if it is in the Hugging Face cache."""
    return _cached_snapshot(hub_id)


def _not_available(hub_id: str, why: str) -> ModelError:
    local = Path.cwd() / hub_id
    return ModelError(
        f"cannot find model {hub_id!r}: {why}. Tried: the embedded models ({_embedded_text()}); "
        f"a local path ({local} does not exist); the Hugging Face cache ({_hub_cache_dir()}). "
        f"To make it available: connect to the internet and load it once, or run "
        f"`hf download {hub_id}` (older huggingface_hub: `huggingface-cli download {hub_id}`) "
        f"where there is a connection and copy the cache here, or pass a local model "
        f"directory inside {_roots_text()}"
    )


def _hub_revision(hub_id: str) -> str:
    """The commit sha of the model's snapshot: the cached one, else the hub's (online only)."""
    snapshot = _cached_snapshot(hub_id)
    if snapshot is not None:
        return snapshot.name
    if _hub_offline():
        raise _not_available(hub_id, "it is not in the local Hugging Face cache and the hub "
                                     "is offline (HF_HUB_OFFLINE=1)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi().model_info(hub_id, timeout=10).sha
    except RepositoryNotFoundError as err:
        raise _not_available(hub_id, "the Hugging Face hub has no such model (or it is "
                                     "private)") from err
    except Exception as err:  # network trouble: say so rather than hang or crash
        raise _not_available(hub_id, f"the hub could not be asked ({type(err).__name__}: "
                                     f"{err})") from err


def _config_file(resolved: Resolved) -> Path:
    """The config.json of a directory or hub model; a hub id's alone is fetched if uncached."""
    if resolved.source != "huggingface":
        return resolved.path / "config.json"
    snapshot = _cached_snapshot(resolved.hub_id)
    if snapshot is not None:
        return snapshot / "config.json"
    _hub_revision(resolved.hub_id)  # offline or unknown: its clear error
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(resolved.hub_id, "config.json", cache_dir=_hub_cache_dir()))


# --------------------------------------------------------------------------- fingerprints

_FINGERPRINTS: dict[tuple, str] = {}  # (path, stat of each content file) -> sha256 hex
_FINGERPRINT_LOCK = threading.Lock()


def fingerprint(ref: str) -> str:
    """A content hash of the model a reference points to; never loads the model.

    Files: sha256 over the names and bytes of the content files (`CONTENT_PATTERNS`, or a
    .bin and its tokenizer), cached until one of them changes (path, size, mtime, inode).
    Hub ids: `"<hub id>@<commit sha>"` of the cached snapshot.
    """
    return _fingerprint(resolve(ref))


def _fingerprint(resolved: Resolved) -> str:
    if resolved.source == "huggingface":
        return f"{resolved.hub_id}@{_hub_revision(resolved.hub_id)}"
    files = _content_files(resolved)  # {label: path}
    key = (str(resolved.path), tuple((label, *_stat_signature(p)) for label, p in files.items()))
    with _FINGERPRINT_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = _hash_files(files)
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = digest
    return digest


def _content_files(resolved: Resolved) -> dict[str, Path]:
    """Label -> file. A directory's files are labelled by name; a llama2.c checkpoint's by
    role, so renaming `tok512.model` to `tokenizer.model` keeps the fingerprint."""
    if resolved.source == "llama2c":
        from analyses.runtime import llama2c

        checkpoint, tokenizer = llama2c.content_files(resolved.path)
        return {"llama2c-checkpoint": checkpoint, "sentencepiece-model": tokenizer}
    found = {p for pattern in CONTENT_PATTERNS for p in resolved.path.glob(pattern) if p.is_file()}
    return {p.name: p for p in sorted(found)}


def _stat_signature(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _hash_files(files: dict[str, Path]) -> str:
    """sha256 over each file's label, size and bytes, in label order."""
    h = hashlib.sha256()
    for label, path in sorted(files.items()):
        h.update(label.encode() + b"\0" + path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class LoadedModel:
    bridge: TransformerBridge  # in eval mode, on `device`, in `dtype`
    fingerprint: str  # content hash, see `fingerprint`
    ref: str  # the reference as the user gave it
    source: str  # one of SOURCES
    device: str  # "cuda" (or "cuda:N") or "cpu"
    dtype: str  # "float32" or "bfloat16" ("float16" on CUDA only)

    @property
    def tokenizer(self) -> Any:
        return self.bridge.tokenizer


_LOADED: OrderedDict[tuple, LoadedModel] = OrderedDict()  # LRU, most recent last
_LOADED_LOCK = threading.Lock()  # guards _LOADED and _LOADING
_LOADING: dict[tuple, threading.Lock] = {}  # one lock per key being loaded: equal loads wait


def load(ref: str = "default", device: str | None = None, dtype: str = "float32") -> LoadedModel:
    """The model a reference names, as a TransformerBridge in eval mode (cached, LRU of 3).

    device: "cuda" when available, else "cpu", unless given. dtype: "float32" (default) or
    "bfloat16"; "float16" only on CUDA. Thread-safe: concurrent loads of one model share it.
    """
    resolved = resolve(ref)
    model_policy.check(ref, resolved, lambda: _config_file(resolved))  # before any weights
    device = _pick_device(device)
    _check_dtype(dtype, device)
    fp = _fingerprint(resolved)
    key = (resolved.location, fp, device, dtype)  # the fingerprint: new weights, new entry
    with _LOADED_LOCK:
        hit = _cache_get(key)
        key_lock = _LOADING.setdefault(key, threading.Lock()) if hit is None else None
    if key_lock is not None:
        hit = _load_once(key, key_lock, resolved, fp, ref, device, dtype)
    return hit if hit.ref == ref else replace(hit, ref=ref)


def _load_once(key: tuple, key_lock: threading.Lock, resolved: Resolved, fp: str, ref: str,
               device: str, dtype: str) -> LoadedModel:
    """Boot under the key's own lock, so equal concurrent loads boot once and share it,
    while other models stay free to load (and cached ones to be returned)."""
    with key_lock:
        with _LOADED_LOCK:
            hit = _cache_get(key)  # another thread may have loaded it meanwhile
        if hit is not None:
            return hit
        try:
            bridge = _boot(resolved, device, dtype, _keyed_revision(resolved, fp))
        except BaseException:
            with _LOADED_LOCK:
                _LOADING.pop(key, None)
            raise
        loaded = LoadedModel(bridge, fp, ref, resolved.source, device, dtype)
        with _LOADED_LOCK:  # cache it and retire its lock in one step: no second boot between
            _LOADED[key] = loaded
            while len(_LOADED) > LRU_SIZE:
                _LOADED.popitem(last=False)
            _LOADING.pop(key, None)
        return loaded


def clear_cache() -> None:
    """Forget every loaded model (and every memoised fingerprint)."""
    with _LOADED_LOCK:
        _LOADED.clear()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS.clear()


def _cache_get(key: tuple) -> LoadedModel | None:
    hit = _LOADED.get(key)
    if hit is not None:
        _LOADED.move_to_end(key)
    return hit


def _pick_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = device.strip().lower()
    if name == "cpu":
        return name
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r} was asked for but no CUDA GPU is available; "
                             "use device='cpu'")
        return name
    raise ModelError(f"unknown device {device!r}: use 'cpu' or 'cuda' (or leave it unset)")


def _check_dtype(dtype: str, device: str) -> None:
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}: use 'float32' or 'bfloat16'")
    if dtype == "float16" and device == "cpu":
        raise ModelError("float16 on the CPU is refused: CPUs have no fast float16 kernels, so it "
                         "is many times slower than float32; use 'bfloat16' for half the memory")


def _keyed_revision(resolved: Resolved, fp: str) -> str | None:
    """A hub model's commit its results are keyed by (`<hub id>@<sha>`): loading exactly that
    snapshot, never whatever `main` names by the time the weights are read (online, a newer
    commit), makes the weights the key's. None for files, whose key hashes the bytes loaded."""
    return fp.rpartition("@")[2] if resolved.source == "huggingface" else None


def _boot(resolved: Resolved, device: str, dtype: str, revision: str | None = None) -> TransformerBridge:
    """Build the bridge; library failures become ModelErrors that name the reference.
    `revision`: the hub commit to load (see `_keyed_revision`)."""
    ensure_offline_if_unreachable()
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    torch_dtype = getattr(torch, dtype)
    try:
        if resolved.source == "llama2c":
            bridge = _boot_llama2c(resolved.path, device, torch_dtype)
        else:  # a hub id (its snapshot is known to be cached, or we are online) or a dir
            bridge = TransformerBridge.boot_transformers(resolved.location, device=device,
                                                         dtype=torch_dtype, revision=revision)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first_line = (str(err).strip().splitlines() or [""])[0]  # the CLI prints one line
        raise ModelError(f"cannot load {resolved.location}: {type(err).__name__}: {first_line}") from err
    return bridge.eval()


def _boot_llama2c(path: Path, device: str, torch_dtype) -> TransformerBridge:
    from transformer_lens.model_bridge import TransformerBridge

    from analyses.runtime import llama2c

    hf_model = llama2c.to_hf_model(path).to(device=device, dtype=torch_dtype)
    # With hf_model= the bridge takes the model as it is (no move, no cast); the name is
    # only a label recorded in cfg.model_name, never looked up.
    return TransformerBridge.boot_transformers(
        f"llama2c:{path.stem}", hf_model=hf_model, tokenizer=llama2c.load_tokenizer(path),
        device=device, dtype=torch_dtype,
    )


# --------------------------------------------------------------------------- listing

def available() -> list[dict]:
    """Embedded models, then the models in the local Hugging Face cache (JSON-ready rows)."""
    rows = [{"ref": name, "source": "embedded", "path": str(EMBEDDED_ROOT / name),
             "default": name == DEFAULT_MODEL} for name in _embedded_names()]
    return rows + _cached_hub_models()


def _cached_hub_models() -> list[dict]:
    ensure_offline_if_unreachable()
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir(_hub_cache_dir())
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        revisions = [r for r in repo.revisions if any(f.file_name == "config.json" for f in r.files)]
        if repo.repo_type != "model" or not revisions:
            continue
        newest = max(revisions, key=lambda r: r.last_modified)
        rows.append({"ref": repo.repo_id, "source": "huggingface", "path": str(newest.snapshot_path),
                     "revision": newest.commit_hash, "size_bytes": repo.size_on_disk})
    return rows
