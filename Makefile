# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FASHION_DIR := /usr/share/datasets/fashion-mnist
FASHION_HINT := Fashion-MNIST is optional (configs/fashion.yaml): install it with 'sudo apt-get install \
dataset-fashion-mnist' (Debian/Ubuntu), or put the four *-ubyte.gz files of \
github.com/zalandoresearch/fashion-mnist in data/fashion-mnist/

.PHONY: demo test lint clean venv data zoo gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "setuptools<81" wheel
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wsr-bench --threads 1 run configs/demo.yaml --out runs/demo

# Fashion-MNIST from Debian's dataset-fashion-mnist package: installed when apt-get runs as root; otherwise (or
# when apt fails) it only says what to do and succeeds, so CI without apt still passes (the real-data test skips).
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST is installed in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q \
	    dataset-fashion-mnist)) >/dev/null && echo "installed Fashion-MNIST in $(FASHION_DIR)" \
	  || echo "apt-get could not install dataset-fashion-mnist. $(FASHION_HINT)"; \
	else echo "$(FASHION_HINT)"; fi

# The published Fashion-MNIST zoo (configs/zoo_fashion.yaml): trains, evaluates and publishes every model that is not
# published yet (hours of CPU; it continues where it stopped). Needs Fashion-MNIST (make data).
zoo: $(STAMP)
	$(BIN)/wsr-bench --threads 1 zoo configs/zoo_fashion.yaml --out runs/zoo
	$(BIN)/wsr-bench zoo configs/zoo_fashion.yaml --write-summary README.md --write-summary docs/zoo.md

# The prepared GPU check (benchmarks/gpu_check.py, about 8 minutes on one GPU): writes gpu_check.json.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out gpu_check.json

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check wsr_bench tests benchmarks

clean:
	rm -rf runs .pytest_cache
