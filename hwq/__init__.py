"""hwq: quantized neural networks to verified, synthesizable iCE40 hardware.

Sub-packages, one concern each (see ``README.md``):

* :mod:`hwq.formats` -- golden, integer-exact number formats (the one source of truth);
* :mod:`hwq.pe` -- Amaranth processing elements and their manifests;
* :mod:`hwq.synth` -- YoWASP yosys / nextpnr runs and their reports;
* :mod:`hwq.build` -- the ``python -m hwq.build`` command line.
"""

__version__ = "0.1.0"
