# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AVATAR_HOME ?= $(CURDIR)/.avatar
DEMO_OUT ?= $(AVATAR_HOME)/demo

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export AVATAR_HOME

.PHONY: install demo test lint format bench clean

# The venv is (re)built when the pins change; torch is named with the rest so pip cannot move it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/avatar-platform generate --preset demo --out $(DEMO_OUT)/dataset
	$(BIN)/avatar-platform dataset info $(DEMO_OUT)/dataset
	@echo ""
	@echo "Look at: $(DEMO_OUT)/dataset/preview.png (styles x views)"
	@echo "         $(DEMO_OUT)/dataset/dataset.json (the dataset card)"
	@echo "MLflow:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AVATAR_HOME)/mlflow.db"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/generation.py

clean:
	rm -rf $(VENV) .avatar
