"""The dependency rules between hwq's layers (docs/architecture.md, "Dependency rules").

Checked twice: statically, every import statement of every module against its layer's rules; and
at run time, by importing a layer (and discovering its registries) in a fresh interpreter and
looking at what ended up in ``sys.modules``.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: folder -> package name it is installed as
PACKAGES = {"hwq": "hwq", "sim": "hwq.sim", "boards": "hwq.boards"}

HARDWARE = ("amaranth", "amaranth_boards", "cocotb", "cocotb_tools")
TORCH = ("torch", "sklearn", "matplotlib")
TOOL_LAYERS = ("hwq.synth", "hwq.sim", "hwq.boards", "hwq.tools")

#: module prefix -> import prefixes it must not use
RULES = {
    "hwq.formats": HARDWARE + TORCH + ("hwq.pe", "hwq.synth", "hwq.quant", "hwq.sim", "hwq.boards", "hwq.tools",
                                       "hwq.build", "hwq.quantize", "subprocess"),
    "hwq.errors": HARDWARE + TORCH + ("hwq.formats", "hwq.pe", "hwq.quant") + TOOL_LAYERS,
    "hwq.registry": HARDWARE + TORCH + ("hwq.formats", "hwq.pe", "hwq.quant") + TOOL_LAYERS,
    "hwq.tools": HARDWARE + TORCH + ("hwq.formats", "hwq.pe", "hwq.quant", "hwq.synth", "hwq.sim", "hwq.boards"),
    "hwq.pe": TORCH + ("hwq.quant", "hwq.synth", "hwq.sim", "hwq.boards", "hwq.build", "hwq.quantize"),
    "hwq.synth": HARDWARE + TORCH + ("hwq.formats", "hwq.pe", "hwq.quant", "hwq.sim", "hwq.boards"),
    # the integer semantics: numpy alone, so an export runs (and hardware is generated) without torch
    "hwq.integer": HARDWARE + TORCH + ("hwq.pe", "hwq.synth", "hwq.quant", "hwq.sim", "hwq.boards", "hwq.tools",
                                       "hwq.build", "hwq.quantize", "hwq.models"),
    # the accelerator generator reads an export through hwq.integer: never torch or the front end
    "hwq.accel": TORCH + ("hwq.quant", "hwq.synth", "hwq.sim", "hwq.boards", "hwq.build", "hwq.quantize",
                          "hwq.models"),
    "hwq.models": HARDWARE + ("hwq.pe", "hwq.synth", "hwq.sim", "hwq.boards", "hwq.tools", "hwq.integer"),
    "hwq.quant": HARDWARE + ("hwq.pe", "hwq.synth", "hwq.sim", "hwq.boards", "hwq.tools", "hwq.build",
                             "hwq.quantize"),
    # the manifest-only reference model: independent of the golden model it checks
    "hwq.sim.reference": HARDWARE + TORCH + ("hwq.formats", "hwq.pe", "hwq.quant", "hwq.synth", "hwq.boards"),
    "hwq.sim": TORCH + ("hwq.pe", "hwq.quant", "hwq.synth", "hwq.boards"),
    "hwq.boards": TORCH + ("hwq.quant", "hwq.synth", "hwq.sim"),
}


def _modules():
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            yield ".".join((package, *parts)), path


def _imports(name, path):
    """Absolute names of everything module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            prefix = f"{base}.{module}".strip(".") if node.level else module
            yield prefix
            yield from (f"{prefix}.{alias.name}" for alias in node.names)


def _rules_for(name):
    """The most specific rule that applies to module ``name``."""
    keys = [key for key in RULES if name == key or name.startswith(key + ".")]
    return RULES[max(keys, key=len)] if keys else ()


def _violations():
    found = []
    for name, path in _modules():
        forbidden = _rules_for(name)
        for imported in _imports(name, path):
            for prefix in forbidden:
                if imported == prefix or imported.startswith(prefix + "."):
                    found.append(f"{path.relative_to(ROOT)}: {name} imports {imported} ({prefix} is off limits)")
    return sorted(set(found))


def test_every_module_keeps_its_layers_rules():
    assert _violations() == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    # a formats module that imports amaranth and the PEs must be reported
    fake = tmp_path / "hwq" / "formats"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("import amaranth.hdl\nfrom ..pe import base\nfrom . import golden\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"hwq": "hwq"})
    assert _violations() == [
        "hwq/formats/bad.py: hwq.formats.bad imports amaranth.hdl (amaranth is off limits)",
        "hwq/formats/bad.py: hwq.formats.bad imports hwq.pe (hwq.pe is off limits)",
        "hwq/formats/bad.py: hwq.formats.bad imports hwq.pe.base (hwq.pe is off limits)",
    ]


@pytest.mark.parametrize("code, absent", [
    # the golden layer, with every format and calibrator discovered, loads no hardware or torch
    ("import hwq.formats as f; f.FORMATS.names(); f.CALIBRATORS.names()", HARDWARE + TORCH),
    # synthesis works on Verilog and manifests only
    ("import hwq.synth", HARDWARE + TORCH + ("hwq.pe", "hwq.formats", "hwq.quant")),
    # PEs need no torch; the front end needs no hardware
    ("import hwq.pe as p; p.PE_CLASSES.names()", TORCH + ("hwq.quant", "hwq.synth")),
    ("from hwq.quant.train import QAT_PROCEDURES; QAT_PROCEDURES.names()", HARDWARE + ("hwq.pe", "hwq.synth")),
    # the integer reference model and the export reader need numpy only
    ("import hwq.integer, hwq.integer.ops", HARDWARE + TORCH + ("hwq.quant", "hwq.pe", "hwq.synth")),
    # the accelerator generator needs no torch and no front end
    ("import hwq.accel", TORCH + ("hwq.quant",)),
    # the reference model does not load the golden model it is checked against
    ("import hwq.sim.reference", HARDWARE + TORCH + ("hwq.formats", "hwq.pe")),
])
def test_importing_a_layer_loads_nothing_it_must_not(code, absent):
    env = {k: v for k, v in os.environ.items() if k != "HWQ_PLUGINS"}
    check = (f"{code}\nimport sys\n"
             f"bad = sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {absent!r}))\n"
             "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_tests_of_the_hardware_layers_need_no_torch():
    # the format, PE, simulation, synthesis and board tests run where torch is not installed
    found = []
    for folder in ("formats", "pe", "sim", "synth", "boards"):
        for path in sorted((ROOT / "tests" / folder).rglob("*.py")):
            name = ".".join(("tests", folder, *path.relative_to(ROOT / "tests" / folder).with_suffix("").parts))
            found += [f"{name} imports {imported}" for imported in _imports(name, path)
                      if imported.split(".")[0] in TORCH or imported.startswith("hwq.quant")]
    assert found == []
