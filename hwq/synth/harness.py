"""A synthesis harness: the PE (or any design, :func:`wrap_verilog`) behind four pins, with every
path register to register.

A bare PE has more I/O than iCE40UP5K-SG48's 39 user pins, and with unregistered inputs its
multiplier would be an I/O path that nextpnr's Fmax does not cover (docs/toolchain.md,
"I/O count and the synthesis harness"). The harness puts the PE between flip-flops and uses
four pins:

``clk``
    the clock;
``rst``
    reset, registered once (``rst_q``) before it reaches the PE's synchronous reset;
``sin``
    serial data in: every clock the shift register ``sr`` shifts in one bit, and every PE
    input other than ``clk``/``rst`` (``valid``, ``clear``, ``a``, ``w`` and any extra input a
    format lists in the manifest's ``ports``, e.g. ``mode``) is wired to its own bits of ``sr``,
    so no input is constant and yosys cannot optimize any of the PE away;
``sout``
    serial data out: the registered XOR of every bit of ``acc`` (and of any other PE output),
    so every accumulator bit is observable and kept. The XOR is a tree of registered 4-input
    XORs, one LUT4 per bit per stage, so the harness never sets the critical path.

The harness is pure Verilog text made from the manifest alone (``hwq.synth`` imports no
front end); the same manifest always gives the same text.
"""

from ..errors import InputError

__all__ = ["harness_name", "harness_verilog", "wrap_verilog", "pe_ports"]

#: manifest ``ports`` entries that the harness wires to its own pins
CLOCK_RESET_PORTS = ("clk", "rst")

#: XOR-tree fan-in per register stage (one iCE40 LUT4)
XOR_FANIN = 4


def harness_name(manifest):
    """Verilog module name of the harness around the manifest's PE."""
    return f"{manifest['module']}_harness"


def pe_ports(manifest):
    """Split the manifest's ports into PE inputs and outputs.

    Parameters
    ----------
    manifest : dict
        A PE manifest (docs/architecture.md, "Manifest contract").

    Returns
    -------
    inputs, outputs : list of (str, int)
        ``(Verilog port name, width)`` in manifest order. ``clk`` and ``rst`` are left out.
        ``acc`` and any port whose entry has ``"direction": "out"`` are outputs; every other
        port is an input.

    Raises
    ------
    InputError
        If a port entry is malformed or ``acc`` is missing.
    """
    ports = manifest.get("ports")
    if not isinstance(ports, dict) or "acc" not in ports:
        raise InputError(f"manifest of {manifest.get('module')!r} has no ports.acc; re-emit it with hwq.pe.write_pe")
    inputs, outputs = [], []
    for key, entry in ports.items():
        if key in CLOCK_RESET_PORTS:
            continue
        if isinstance(entry, str):
            name, width, direction = entry, 1, "in"
        elif isinstance(entry, dict) and isinstance(entry.get("width"), int) and entry["width"] >= 1:
            name, width = entry.get("name", key), entry["width"]
            direction = "out" if key == "acc" else entry.get("direction", "in")
        else:
            raise InputError(f"manifest port {key!r} of {manifest.get('module')!r} is malformed: {entry!r}; "
                           "expected a name or {name, width, signed}")
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"manifest port {key!r} has a bad Verilog name {name!r}; re-emit the PE")
        (outputs if direction == "out" else inputs).append((name, width))
    return inputs, outputs


def _bits(name, width):
    return [f"{name}[{i}]" for i in range(width)]


def _xor_tree(bits):
    """Verilog lines of a registered XOR tree reducing ``bits`` to one, and its last register."""
    lines = []
    stage = 0
    while True:
        stage += 1
        groups = [bits[i:i + XOR_FANIN] for i in range(0, len(bits), XOR_FANIN)]
        reg = f"x{stage}"
        lines.append(f"    reg [{len(groups) - 1}:0] {reg} = {len(groups)}'d0;")
        lines.append("    always @(posedge clk) begin")
        for i, group in enumerate(groups):
            lines.append(f"        {reg}[{i}] <= {' ^ '.join(group)};")
        lines.append("    end")
        bits = _bits(reg, len(groups))
        if len(groups) == 1:
            return lines, bits[0]


def harness_verilog(manifest):
    """Verilog text of the harness module around the manifest's PE.

    Parameters
    ----------
    manifest : dict
        A PE manifest; only ``module`` and ``ports`` are read.

    Returns
    -------
    str
        The module :func:`harness_name` with ports ``clk``, ``rst``, ``sin``, ``sout``,
        instantiating the PE as ``pe``. Deterministic: the text depends only on the manifest.
    """
    module = manifest.get("module")
    if not isinstance(module, str) or not module.isidentifier():
        raise InputError(f"manifest module name {module!r} is not a Verilog identifier; re-emit the PE")
    inputs, outputs = pe_ports(manifest)
    if not inputs:
        raise InputError(f"manifest of {module!r} lists no PE inputs; re-emit it with hwq.pe.write_pe")
    ports = manifest["ports"]
    return wrap_verilog(module, inputs, outputs, harness_name(manifest), clk=ports.get("clk", "clk"),
                        rst=ports.get("rst", "rst"), instance="pe", what="PE")


def wrap_verilog(module, inputs, outputs, name, *, clk="clk", rst="rst", instance="dut", what="design"):
    """Verilog text of a four-pin harness module ``name`` around ``module`` (module docstring).

    Parameters
    ----------
    module : str
        The wrapped module (a Verilog identifier).
    inputs, outputs : list of (str, int)
        Its ports other than the clock and reset, ``(name, width)``, in connection order.
    name : str
        The harness module's name.
    clk, rst : str or None, optional
        The wrapped module's clock and (synchronous, active-high) reset ports; ``rst=None``
        for a module without one.
    instance : str, optional
        Instance name of ``module`` inside the harness (default ``"dut"``).
    what : str, optional
        What the wrapped module is, for the header comment.

    Returns
    -------
    str
        Deterministic Verilog text.

    Raises
    ------
    InputError
        ``inputs`` or ``outputs`` empty.
    """
    if not inputs or not outputs:
        raise InputError(f"{module}: a harness needs at least one input and one output besides clock and reset")
    sr_width = sum(width for _, width in inputs)
    shift = f"{{sr[{sr_width - 2}:0], sin}}" if sr_width > 1 else "sin"
    lines = [
        f"// Synthesis harness for {module}, generated by hwq.synth.harness (do not edit).",
        "// Pins: clk; rst (registered); sin, serial data shifted into sr, whose flip-flops drive",
        f"// every {what} input; sout, the registered XOR-reduction of every {what} output bit.",
        f"module {name} (",
        "    input  wire clk,",
        "    input  wire rst,",
        "    input  wire sin,",
        "    output wire sout",
        ");",
        "    reg rst_q = 1'b0;",
        f"    reg [{sr_width - 1}:0] sr = {sr_width}'d0;",
        "    always @(posedge clk) begin",
        "        rst_q <= rst;",
        f"        sr <= {shift};",
        "    end",
    ]
    for port, width in outputs:
        lines.append(f"    wire [{width - 1}:0] {instance}_{port};")
    connections = [f".{clk}(clk)"] + ([f".{rst}(rst_q)"] if rst else [])
    low = 0
    for port, width in inputs:
        connections.append(f".{port}(sr[{low + width - 1}:{low}])" if width > 1 else f".{port}(sr[{low}])")
        low += width
    connections += [f".{port}({instance}_{port})" for port, _ in outputs]
    lines.append(f"    {module} {instance} (")
    lines += [f"        {c}," for c in connections[:-1]] + [f"        {connections[-1]}", "    );"]
    out_bits = [bit for port, width in outputs for bit in _bits(f"{instance}_{port}", width)]
    tree, last = _xor_tree(out_bits)
    lines += tree
    lines += [f"    assign sout = {last};", "endmodule", ""]
    return "\n".join(lines)
