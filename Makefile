# Every target sets up what it needs from nothing: a fresh clone + `make demo` or `make test` works.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a CPU wheel lies on this machine; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m rnnlab demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest tests

# The documentation site in site/; --strict: a broken link or API reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

bench: $(STAMP)
	$(PY) benchmarks/charlm_numpy.py
	$(PY) benchmarks/denoise.py
	$(PY) benchmarks/forecast.py
	$(PY) benchmarks/backends.py
	$(PY) benchmarks/scan.py
	$(PY) benchmarks/corpus_scale.py
	$(PY) benchmarks/frontier.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
