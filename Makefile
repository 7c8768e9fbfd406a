# Every target sets up what it needs from nothing: a fresh clone + `make demo` or `make test` works.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint lowest bench venv clean

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

# Ruff: lint and format check (settings in pyproject.toml); `ruff format` rewrites.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The lowest versions pyproject.toml allows (uv's lowest-direct resolution), in a second venv on Python 3.10,
# without torch (its CPU wheel here is for 3.11 only, and a lowest torch from the registry is a CUDA build):
# a fast subset of the tests that needs no torch. A floor that fails here is raised in pyproject.toml.
LOWEST := .venv-lowest
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
LOWEST_TESTS := tests/test_forecast_stats.py tests/test_numpy_gradcheck.py tests/test_cells_reference.py \
	tests/test_config.py tests/test_prices.py tests/test_table.py tests/test_ou_kalman.py tests/test_text_data.py tests/test_plugins.py \
	tests/test_onnx.py tests/test_report.py tests/test_api.py tests/test_backtest.py tests/test_jax_backend.py \
	tests/test_series_task.py tests/test_series_backtest.py tests/test_numpy_kernels.py \
	tests/test_sweep.py::test_pruner_stops_a_bad_trial_at_an_evaluation
lowest: $(STAMP)
	@$(PY310) -c "import sys; assert sys.version_info[:2] == (3, 10)" 2>/dev/null || \
		{ echo "make lowest: no working Python 3.10 at $(PY310); set PY310=/path/to/python3.10" >&2; exit 1; }
	$(VENV)/bin/uv venv --quiet --allow-existing --python $(PY310) $(LOWEST)
	$(VENV)/bin/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct \
		-e '.[jax,sweep,onnx,parquet,numba]' 'pytest>=7'
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider $(LOWEST_TESTS) -k "not torch and not device"

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
	$(PY) benchmarks/task_defaults.py

clean:
	rm -rf $(VENV) $(LOWEST) runs site .pytest_cache
