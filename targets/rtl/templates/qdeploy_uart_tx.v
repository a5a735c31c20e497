// 8N1 UART transmitter for qdeploy's board top levels. Part of qdeploy; plain Verilog-2005.
`default_nettype none

module qdeploy_uart_tx #(
    parameter integer CLKS_PER_BIT = 104
) (
    input  wire       clk,
    input  wire       rst,
    input  wire [7:0] data,
    input  wire       start,
    output wire       busy,
    output wire       tx
);
    localparam integer TIMER_BITS = $clog2(CLKS_PER_BIT * 2);
    localparam integer BIT_PERIOD = CLKS_PER_BIT - 1;

    reg [9:0] frame;  // stop bit, 8 data bits, start bit; shifted out from bit 0
    reg [3:0] remaining;
    reg [TIMER_BITS-1:0] timer;

    assign tx = frame[0];
    assign busy = remaining != 4'd0;

    always @(posedge clk) begin
        if (rst) begin
            frame <= 10'h3ff;
            remaining <= 4'd0;
        end else if (!busy) begin
            if (start) begin
                frame <= {1'b1, data, 1'b0};
                remaining <= 4'd10;
                timer <= BIT_PERIOD[TIMER_BITS-1:0];
            end
        end else if (timer != 0) begin
            timer <= timer - 1'b1;
        end else begin
            frame <= {1'b1, frame[9:1]};
            remaining <= remaining - 4'd1;
            timer <= BIT_PERIOD[TIMER_BITS-1:0];
        end
    end
endmodule

`default_nettype wire
