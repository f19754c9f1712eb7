# Two commands for a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test bench clean

install: $(STAMP)

# torch==2.13.0 is installed before the project: on this CPU machine pip takes the CPU build on disk,
# on a GPU machine the same pin takes the CUDA build. The project's own pin is a lower bound only.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m train_entry.tiny --data examples/data/quickstart.jsonl examples/data/preferences.jsonl --out .cache/tiny-llama
	$(VENV)/bin/cloudft submit examples/quickstart.yaml --provider local

# Debian's Chromium + ChromeDriver drive the labeling app's browser test (skipped where they cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 || \
	    echo "note: could not install chromium; the browser test will be skipped"; }

# Two pytest-xdist workers, one test file each at a time (module fixtures build once): 7-10 min instead of 11 here.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/data_throughput.py --records 200000
	$(PY) benchmarks/label_load.py
	$(PY) benchmarks/planner_plan_speed.py
	$(PY) benchmarks/serve_latency.py

clean:
	rm -rf $(VENV) .cache runs examples/runs
