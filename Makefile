# The two commands people run: `make demo` and `make test`. Both set up .venv first.
PY      := .venv/bin/python
STAMP   := .venv/.installed
APT_PKGS := dataset-fashion-mnist yosys iverilog verilator nextpnr-ice40 fpga-icestorm

.PHONY: setup demo test test-slow bench bench-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,interop,test,zoo]'
	@bash .ci/apt-deps $(APT_PKGS)
	touch $(STAMP)

demo: setup
	$(PY) -m tvm_qnn.demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# Every benchmark (hours on 2 cores, the model-zoo conformance run alone ~2 h; each prints ratios measured in one run and writes
# results/*.json + plots), then the README's results tables regenerated from those JSONs.
bench: setup
	$(PY) benchmarks/roofline.py
	$(PY) benchmarks/kernels.py
	$(PY) benchmarks/models.py
	$(PY) benchmarks/cost_model.py
	$(PY) benchmarks/compile_time.py
	$(PY) benchmarks/fpga.py
	$(PY) benchmarks/fpga_streaming.py
	$(PY) benchmarks/cpu_integer_only.py
	$(PY) benchmarks/kernels_vnni.py
	$(PY) benchmarks/rtl.py
	$(PY) benchmarks/fpga_build.py
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/conformance.py
	$(PY) benchmarks/pretrained.py
	$(PY) benchmarks/report.py

# The same, small: a smoke run of every benchmark script (minutes).
bench-quick: setup
	$(PY) benchmarks/kernels.py --quick --skip-tuned --skip-tvm-fp32
	$(PY) benchmarks/fpga.py --quick
	$(PY) benchmarks/fpga_streaming.py --quick
	$(PY) benchmarks/cpu_integer_only.py --quick
	$(PY) benchmarks/kernels_vnni.py --quick
	$(PY) benchmarks/accuracy.py --fast

clean:
	rm -rf .venv build *.egg-info results runs
