# Two commands on a fresh machine: `make run` (the app on the embedded model)
# and `make test` (the whole suite). Setup is idempotent: it reinstalls only
# when a requirements file is newer than the last install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup run test train-default

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/streamlit run app/main.py --server.port $(PORT)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Retrains the embedded model from scratch (about 40 minutes on 2 CPU cores); not part of run/test.
train-default: setup
	HF_HUB_OFFLINE=1 $(PY) -m analyses.train_default --out data/models/tiny-circuits
