"""cocotb testbenches that drive emitted PE Verilog from its manifest alone.

Modules
-------
reference
    Manifest-only reference model of the PE contract (imports only hwq.manifest and hwq.errors).
pe_bench
    The cocotb test module (run inside the simulator).
runner
    ``run_bench`` / ``hwq-sim``: build and run the bench on Verilator or Icarus.
"""
