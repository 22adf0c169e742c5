# `make demo` and `make test` set up .venv on first use (scripts/setup.sh), then run.
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test dists bench clean

setup: $(STAMP)

$(STAMP): scripts/setup.sh pyproject.toml $(wildcard providers/*/pyproject.toml adapters/*/pyproject.toml)
	./scripts/setup.sh
	touch $@

demo: setup
	$(VENV)/bin/stt-core transcribe examples/audio/fox.wav

# Two workers, a test file to each (its module-scoped servers and models stay in one process): much of
# the suite waits on audio paced in real time and on sockets, and two workers overlap those waits.
test: setup
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

# Every distribution's wheel and sdist into dist/, checked with twine (what a release publishes).
dists: setup
	./scripts/dists.sh dist

bench: setup
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[bench]"
	$(VENV)/bin/python benchmarks/run.py

clean:
	rm -rf $(VENV)
