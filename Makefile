# The two commands people run: `make demo` and `make test`. Both set up .venv first.
PY      := .venv/bin/python
STAMP   := .venv/.installed
APT_PKGS := dataset-fashion-mnist yosys iverilog verilator nextpnr-ice40 fpga-icestorm

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@bash .ci/apt-deps $(APT_PKGS)
	touch $(STAMP)

demo: setup
	$(PY) -m tvm_qnn.demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf .venv build *.egg-info results runs
