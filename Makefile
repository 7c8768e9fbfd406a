# Every target sets up what it needs from nothing: a fresh clone + `make demo` or `make test` works.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a CPU wheel lies on this machine; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m rnnlab charlm train --out runs/demo --force --hidden-size 256 --seq-len 64 \
		--batch-size 32 --max-steps 600 --eval-every 150
	@echo "--- samples from runs/demo (temperature 0.7) ---"
	$(PY) -m rnnlab charlm sample --run runs/demo --best --length 400 --temperature 0.7 --prime "The "
	$(PY) -m rnnlab charlm eval --run runs/demo --best
	@echo "--- denoising an Ornstein-Uhlenbeck signal, against the Kalman predictor ---"
	$(PY) -m rnnlab denoise train --out runs/demo-denoise --force --eval-every 500
	@echo "--- forecasting the built-in price series, against persistence ---"
	$(PY) -m rnnlab forecast train --out runs/demo-forecast --force --target returns --cell lstm --quiet

test: $(STAMP)
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) benchmarks/charlm_numpy.py
	$(PY) benchmarks/denoise.py
	$(PY) benchmarks/forecast.py
	$(PY) benchmarks/backends.py

clean:
	rm -rf $(VENV) runs .pytest_cache
