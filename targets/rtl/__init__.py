"""The open RTL target: QONNX MLPs to pipelined Verilog (adder graphs, comparators, XNOR-popcount), simulated
bit-exact with Verilator, synthesized with yosys and placed and routed with nextpnr to an iCE40/ECP5 bitstream."""
