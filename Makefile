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
# attention-output SAEs and MLP transcoder: 1,024 latents, k 16, 1M tokens each, seed 0) into
# data/dictionaries/tiny-circuits/<site>/, then KL fine-tunes the six where that meets more
# of issue 27's targets or recovers more CE at no other cost (the card's NOTES.md says what was
# tried), and writes their card; resumes where it stopped (a finished fine-tune is not redone).
# About 50 minutes on 2 busy cores; not part of run/test.
DICTIONARIES := --model default --latents 1024 --k 16 --tokens 1000000 --transcoder-skip \
  --out data/dictionaries/tiny-circuits
train-dictionaries: setup
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site all
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.1.hook_resid_post \
	  --kl-finetune-tokens 200000 --kl-coeff 5
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.0.attn.hook_z \
	  --kl-finetune-tokens 200000 --kl-coeff 5
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.1.attn.hook_z \
	  --kl-finetune-tokens 600000 --kl-coeff 5
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.0.hook_resid_post \
	  --kl-finetune-tokens 400000 --kl-coeff 20 --kl-decoder-only
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.2.hook_resid_post \
	  --kl-finetune-tokens 800000 --kl-coeff 5 --kl-decoder-only
	HF_HUB_OFFLINE=1 $(PY) -m analyses dictionaries train $(DICTIONARIES) --site blocks.2.mlp \
	  --kl-finetune-tokens 200000 --kl-coeff 5 --kl-decoder-only
	$(PY) -m analyses.dictionaries.card data/dictionaries/tiny-circuits
