# Two quick-start targets: `make demo` (the main job) and `make test`. Both set up what they need first and
# are idempotent: a second run reuses the environment and the NLTK data.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NLTK_DATA ?= $(CURDIR)/.cache/nltk_data
export NLTK_DATA
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
PYTEST_ARGS ?=

.PHONY: demo test env nltk-data clean

# The main job (docs: README "Quick start"): trains tiny SEPIT and the baselines, evaluates everything on SP14,
# prints the leaderboard. Re-running resumes; DEMO_ARGS='--fresh true' starts over.
DEMO_ARGS ?=
demo: env nltk-data
	$(BIN)/sepit demo $(DEMO_ARGS)

# pytest's exit status 5 means it collected no test: reported, not hidden, and not a build failure.
test: env nltk-data
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$status

env: $(VENV)/.installed

# Reinstalled when the pins or the package metadata change.
$(VENV)/.installed: requirements/ci.txt pyproject.toml
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements/ci.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# WordNet (METEOR) and punkt (ROUGE-Lsum) without nltk.download: Debian's WordNet, copied into NLTK_DATA.
nltk-data: $(NLTK_DATA)/.ready

$(NLTK_DATA)/.ready: $(VENV)/.installed
	@if [ -f $(NLTK_DATA)/corpora/wordnet/lexnames ] && [ -d $(NLTK_DATA)/tokenizers/punkt_tab ]; then \
	  touch $@; exit 0; \
	fi; \
	if [ ! -f /usr/share/wordnet/index.sense ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index; \
	  else \
	    echo "WordNet is missing: run 'sudo apt-get install wordnet-base wordnet-sense-index', or nltk.download('wordnet') and nltk.download('punkt_tab') into $(NLTK_DATA)"; exit 1; \
	  fi; \
	fi; \
	$(BIN)/python -m sepit.nltk_data $(NLTK_DATA) && touch $@

clean:
	rm -rf $(VENV) .cache .pytest_cache
