# Two entry points for a fresh machine:  make demo  (the default comparison)  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
EXTRAS ?= dev

.PHONY: demo test test-fast venv lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Install torch (the CPU build pinned above) unless one is already importable in the venv,
# then this package with its extras.
venv: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"

demo: venv
	$(VENV)/bin/ddc compare

# The tests also cover Hugging Face models, the HF Trainer, PEFT and Lightning (the optional
# extras; those tests skip without them), and ddc robustness.
# The robustness extra (kornia) and torchattacks, installed without its declared torchvision
# (which would replace the CPU torch; torchattacks never imports it); those tests skip without.
TORCHATTACKS ?= torchattacks==3.5.1
test: EXTRAS = dev,huggingface,integrations,robustness
test: venv
	$(PY) -m pip install -q --no-deps "$(TORCHATTACKS)"
	$(PY) -m pytest -q

# The unit tests (tests/lib, tests/experiments): no other processes, examples, benchmarks or
# optional frameworks (tests/integration), no training through the suite (slow); two workers.
test-fast: venv
	$(PY) -m pytest -q -n 2 -m "not slow and not integration"

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: venv
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
