# Two commands on a fresh machine with only Python and make:
#   make demo   create .venv if absent, install, train and report on generated data
#   make test   the same install, then the test suite
#   make docs   the same install, then the documentation site into site/ (offline)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[export,dev,serve,tensorboard,mlflow,docs,openvino]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fcnseg demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs site
