# Two commands do all the set-up on a fresh machine:
#   make demo   runs the sshguard flow on the bundled sshd log
#   make test   runs the linters and the whole test suite (what CI runs)
# Both create .venv/ on first use. `make test-fast` skips tests marked slow.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/drop run examples/sshguard/flow.yaml --input examples/data/OpenSSH_2k.log

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no test was collected" >&2; exit 1; fi; exit $$rc

test-fast:
	$(MAKE) test PYTEST_ARGS="-m 'not slow'"

bench: $(STAMP)
	$(PY) bench/pipeline.py
	$(PY) bench/http_bench.py   # needs wrk (apt-get install wrk)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
