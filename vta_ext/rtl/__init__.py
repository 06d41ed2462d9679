"""RTL of the accelerator core: parameterized Verilog, co-simulation and synthesis calibration.

* ``verilog/``: one module per file (GEMM variants, accumulators, LUT apply, requant ALU,
  micro-op sequencer, core top), each with a header naming its ports and timing;
* ``tools``: finding yosys / iverilog / verilator / nextpnr (missing -> ToolNotFoundError);
* ``simulate``: test bench runner; ``tiles``: GEMM tiles through the RTL;
* ``cosim``: the same instruction stream through the compute RTL and ``vta_ext.sim``;
* ``core_cosim``: the whole core (``qnn_core``: fetch, queues, tokens, DMA) against ``vta_ext.sim``;
* ``synth``: bounded yosys runs (``stat -json``) and nextpnr Fmax;
* ``calibration``: the resource-model fit and ``load_coefficients()``;
* ``mvau``: the streaming planner's layer block (``verilog/mvau_stream.v``): numpy reference,
  requant thresholds, iverilog co-simulation and its resource fit (``rtl_fit/mvau_fit.json``).
"""
