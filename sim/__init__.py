"""cocotb testbenches that drive emitted PE Verilog from its manifest alone.

Modules
-------
reference
    Manifest-only reference model of the PE contract (imports only hwq.manifest and hwq.errors).
golden
    The checks of a manifest's values (against ``hwq.formats`` and each other) and the models the
    bench tests against: run by the runner before it builds, and by the bench inside the simulator.
pe_bench
    The cocotb test module (run inside the simulator).
runner
    ``run_bench`` / ``hwq-sim``: build and run the bench on Verilator or Icarus.
"""
