// Streaming DepthToSpace for hls4ml's Vivado/Vitis io_stream (written by qdeploy); see nnet_depth_to_space.h.
// One input row is buffered, then written out as b output rows.
#ifndef NNET_DEPTH_TO_SPACE_STREAM_H_
#define NNET_DEPTH_TO_SPACE_STREAM_H_

#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_depth_to_space.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void depth_to_space(hls::stream<data_T> &data, hls::stream<res_T> &res) {
    const unsigned b = CONFIG_T::block;
InputRow:
    for (unsigned h = 0; h < CONFIG_T::in_height; h++) {
        data_T row[CONFIG_T::in_width];
    ReadRow:
        for (unsigned w = 0; w < CONFIG_T::in_width; w++) {
            #pragma HLS PIPELINE
            row[w] = data.read();
        }
    OutputRow:
        for (unsigned i = 0; i < b; i++) {
        OutputPixel:
            for (unsigned w = 0; w < CONFIG_T::in_width * b; w++) {
                #pragma HLS PIPELINE
                res_T out_data;
                PRAGMA_DATA_PACK(out_data)
            OutputChannel:
                for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                    #pragma HLS UNROLL
                    out_data[c] = row[w / b][depth_to_space_source_channel<CONFIG_T>(i, w % b, c)];
                }
                res.write(out_data);
            }
        }
    }
}

} // namespace nnet

#endif
