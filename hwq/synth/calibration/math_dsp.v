// hwq power-model calibration design: 24-bit counter and the 8x8 multiply of two counters (MATH), dsp
// Reproduces tinyvision-ai-inc/ice40_power, power_test/rgb_blink.v (HEAD ecc5e59), as measured in
// the repository's README.md: "HFOSC (12 MHz) + Math (1 DSP) + 24 bit counter (72 LC's)", core 882 uA; synth_ice40 -dsp.
// IO pads, PLL and oscillator left out; the reduced output stays a port so yosys keeps the logic.
// Registers power up as 0 (iCE40 flip-flops do; the original has no reset).
module cal_math_dsp (
    input  wire        clk,
    output wire        out,
    // a port here, unlike in rgb_blink.v: yosys 0.70 proves &(ctr1 * ctr2) == 0 (16'hffff is no
    // product of two 8-bit numbers) and would drop the multiplier that the measured design had
    output wire [15:0] result
);
    reg  [23:0] frequency_counter_i;
    reg  [7:0]  ctr1, ctr2;

    always @(posedge clk)
        frequency_counter_i <= frequency_counter_i + 1'b1;

    always @(posedge clk) begin
        ctr1 <= ctr1 + 3;
        ctr2 <= ctr2 + 5;
    end
    assign result = ctr1 * ctr2;

    // rgb_blink.v: gpio_10_io = frequency_counter_i[CTR_SIZE-1] | (&ctr1) | (&ctr2) | (&result)
    assign out = frequency_counter_i[23] | (&ctr1) | (&ctr2) | (&result);
endmodule
