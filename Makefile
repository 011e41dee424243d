# Two commands on a fresh machine: `make run` (the app on the embedded model)
# and `make test` (the whole suite). Setup is idempotent: it reinstalls only
# when a requirements file is newer than the last install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

CHROMIUM := /usr/bin/chromium

.PHONY: setup browser run test bench bench-full train-default train-dictionaries

# The pinned requirements, then this project itself as an editable package (its own
# dependencies are those pins: --no-deps), so `import analyses` and `import app` work from
# anywhere without editing sys.path.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# plotly.js's cartesian bundle, which draws the app's figures (app/components/plot.py), from
# the npm registry at the Python plotly package's plotly.js version; without npm the app
# falls back to Streamlit's own, slower-loading Plotly.
PLOTLY_BUNDLE := app/static/vendor/plotly-cartesian.min.js
$(PLOTLY_BUNDLE): $(STAMP)
	$(PY) -m app.components.plotly_bundle

setup: $(STAMP) $(PLOTLY_BUNDLE)

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
# Also what kaleido uses for the app's PNG downloads.
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "$(CHROMIUM) is missing and this user cannot install it: the browser tests will skip"; fi; }

run: setup
	$(VENV)/bin/streamlit run app/main.py --server.port $(PORT)

test: setup browser
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Speed against TransformerLens, a forward pass and torch.mm, memory and scaling, and the app's
# cold start, measured in one run (8–11 minutes on 2 CPU cores); prints a table and writes
# bench/results.json. Not part of test.
bench: setup
	HF_HUB_OFFLINE=1 $(PY) -m bench.run

# The slow rows bench leaves out (growth with sequence length and model size, the 64-token
# GPT-2-shape sweeps); writes bench/results-full.json.
bench-full: setup
	BENCH_FULL=1 HF_HUB_OFFLINE=1 $(PY) -m bench.run

# Retrains the embedded model from scratch (15 minutes on 2 cores with bf16 instructions, 25 in fp32 on AVX2-only ones); not part of run/test.
train-default: setup
	HF_HUB_OFFLINE=1 $(PY) -m analyses.embedded --out data/models/tiny-circuits

# Trains the embedded model's shipped sparse dictionaries (every layer's residual and
# attention-output SAE and MLP transcoder, k 16, seed 0) into data/dictionaries/tiny-circuits/<site>/
# and writes their card (DICTIONARIES.md; NOTES.md beside it says what was tried):
# - the transcoders (with a linear skip) and the layer-2 residual SAE: 1,024 latents, 1M tokens;
# - the other SAEs: 2,048 latents (4,096 at layer 1), 8.4M tokens drawn in passes over 1.05M
#   cached ones (--distinct-tokens); the layer-1 residual is a Matryoshka SAE (its first 1,024
#   latents also reconstruct alone: 16M tokens), then trained 4M tokens on without that term;
# - a KL fine-tune where it meets more of issue 27's targets or recovers more CE at no other cost;
# - the attention-output SAEs then trained through matching pursuit (2M-3M tokens) and encoding by
#   it; the layer-0 one then KL fine-tuned through the pursuit (its CE recovered needs it).
# Resumes where it stopped (a finished fine-tune is not redone). The runs go one after another,
# each on TRAIN_THREADS torch threads (the 2-core machine's two); about 40 minutes there as
# projected from the bench's rates (with evaluation). Not part of run/test.
TRAIN_THREADS ?= 2
TRAIN_DICTIONARY := HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train --model default --k 16 \
  --threads $(TRAIN_THREADS) --out data/dictionaries/tiny-circuits
SHORT_RUN := --latents 1024 --tokens 1000000 --transcoder-skip
LONG_RUN := --latents 2048 --tokens 8400000 --distinct-tokens 1050000
train-dictionaries: setup
	$(TRAIN_DICTIONARY) $(SHORT_RUN) --site blocks.0.mlp --site blocks.1.mlp
	$(TRAIN_DICTIONARY) $(SHORT_RUN) --site blocks.2.mlp --kl-finetune-tokens 200000 --kl-coeff 5 --kl-decoder-only
	$(TRAIN_DICTIONARY) $(SHORT_RUN) --site blocks.2.hook_resid_post \
	  --kl-finetune-tokens 800000 --kl-coeff 5 --kl-decoder-only
	$(TRAIN_DICTIONARY) $(LONG_RUN) --site blocks.0.hook_resid_post --kl-finetune-tokens 3200000 --kl-coeff 20
	$(TRAIN_DICTIONARY) $(LONG_RUN) --site blocks.0.attn.hook_z --kl-finetune-tokens 600000 --kl-coeff 5 \
	  --mp-finetune-tokens 2000000 --mp-kl-finetune-tokens 600000
	$(TRAIN_DICTIONARY) --latents 4096 --tokens 8400000 --distinct-tokens 1050000 --site blocks.1.attn.hook_z \
	  --kl-finetune-tokens 600000 --kl-coeff 5 --mp-finetune-tokens 2000000
	$(TRAIN_DICTIONARY) $(LONG_RUN) --site blocks.2.attn.hook_z --kl-finetune-tokens 600000 --kl-coeff 5 \
	  --mp-finetune-tokens 3000000
	$(TRAIN_DICTIONARY) --latents 4096 --tokens 16000000 --distinct-tokens 1050000 --site blocks.1.hook_resid_post \
	  --matryoshka 1024 --matryoshka-release-tokens 4000000
	$(PY) -m analyses.dictionaries.card data/dictionaries/tiny-circuits
