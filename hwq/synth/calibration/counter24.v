// hwq power-model calibration design: free-running 24-bit counter
// Reproduces tinyvision-ai-inc/ice40_power, power_test/rgb_blink.v (HEAD ecc5e59), as measured in
// the repository's README.md: "HFOSC (12 MHz) + 24 bit counter (28 LC's)", core 645 uA (CTR_SIZE=24, no MATH).
// IO pads, PLL and oscillator left out; the reduced output stays a port so yosys keeps the logic.
// Registers power up as 0 (iCE40 flip-flops do; the original has no reset).
module cal_counter24 (
    input  wire clk,
    output wire out
);
    reg [23:0] frequency_counter_i;

    always @(posedge clk)
        frequency_counter_i <= frequency_counter_i + 1'b1;

    // rgb_blink.v: gpio_10_io = frequency_counter_i[CTR_SIZE-1] | ...; without MATH the other
    // terms are constant
    assign out = frequency_counter_i[23];
endmodule
