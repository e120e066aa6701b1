# Two commands for a new user (Python >= 3.11 and pip are all it needs):
#   make demo   set up .venv, then train ResNet-20 on a CIFAR-10 subset on the CPU
#   make test   set up .venv, then run the linter, the tests and every notebook (quick mode)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint notebooks clean

setup: $(VENV)/.installed

# Chainer 7.8.1 ships only as an sdist whose setup.py imports pkg_resources, which
# setuptools >= 82 no longer has: build it without isolation against an older setuptools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools<82" wheel
	$(PY) -m pip install --quiet --no-build-isolation "chainer==7.8.1"
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $@

demo: setup
	$(PY) -m chainer_nets.train --model resnet20 --quick --out runs/demo-$$(date +%Y%m%d-%H%M%S)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

notebooks: setup
	$(PY) -m chainer_nets.notebook_render render

clean:
	rm -rf $(VENV) runs
