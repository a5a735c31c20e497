// 8N1 UART receiver for qdeploy's board top levels (a host talks to the network over the board's USB serial
// bridge). Part of qdeploy; plain Verilog-2005 so every open and vendor tool reads it.
`default_nettype none

module qdeploy_uart_rx #(
    parameter integer CLKS_PER_BIT = 104
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       rx,
    output reg  [7:0] data,
    output reg        valid
);
    localparam integer TIMER_BITS = $clog2(CLKS_PER_BIT * 2);
    localparam integer FIRST_SAMPLE = CLKS_PER_BIT * 3 / 2 - 1;  // middle of data bit 0
    localparam integer BIT_PERIOD = CLKS_PER_BIT - 1;

    reg [1:0] sync;  // two flip-flops: the line is asynchronous to clk
    reg [TIMER_BITS-1:0] timer;
    reg [3:0] received;
    reg busy;
    reg [7:0] shift;

    always @(posedge clk) begin
        sync <= {sync[0], rx};
        valid <= 1'b0;
        if (rst) begin
            busy <= 1'b0;
        end else if (!busy) begin
            if (!sync[1]) begin  // start bit
                busy <= 1'b1;
                timer <= FIRST_SAMPLE[TIMER_BITS-1:0];
                received <= 4'd0;
            end
        end else if (timer != 0) begin
            timer <= timer - 1'b1;
        end else if (received != 4'd8) begin
            shift <= {sync[1], shift[7:1]};  // least significant bit first
            received <= received + 4'd1;
            timer <= BIT_PERIOD[TIMER_BITS-1:0];
        end else begin  // stop bit
            busy <= 1'b0;
            if (sync[1]) begin
                data <= shift;
                valid <= 1'b1;
            end
        end
    end
endmodule

`default_nettype wire
