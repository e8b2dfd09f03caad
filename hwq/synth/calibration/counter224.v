// hwq power-model calibration design: free-running 224-bit counter
// Reproduces tinyvision-ai-inc/ice40_power, power_test/rgb_blink.v (HEAD ecc5e59), as measured in
// the repository's README.md: "External 12 MHz + 28*8 bit counter (228 LC's)", core 641.3 uA (CTR_SIZE=224, no MATH, clock from a pin).
// IO pads, PLL and oscillator left out; the reduced output stays a port so yosys keeps the logic.
// Registers power up as 0 (iCE40 flip-flops do; the original has no reset).
module cal_counter224 (
    input  wire clk,
    output wire out
);
    reg [223:0] frequency_counter_i;

    always @(posedge clk)
        frequency_counter_i <= frequency_counter_i + 1'b1;

    // rgb_blink.v: gpio_10_io = frequency_counter_i[CTR_SIZE-1] | ...; without MATH the other
    // terms are constant
    assign out = frequency_counter_i[223];
endmodule
