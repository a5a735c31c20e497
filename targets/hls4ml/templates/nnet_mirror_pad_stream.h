// Streaming edge/reflect/wrap padding for hls4ml's Vivado/Vitis io_stream (written by qdeploy); see nnet_mirror_pad.h.
// The image is buffered (a border pixel may copy any row of it), then written out padded.
#ifndef NNET_MIRROR_PAD_STREAM_H_
#define NNET_MIRROR_PAD_STREAM_H_

#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_mirror_pad.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void mirror_pad(hls::stream<data_T> &data, hls::stream<res_T> &res) {
    data_T image[CONFIG_T::in_height * CONFIG_T::in_width];
ReadImage:
    for (unsigned p = 0; p < CONFIG_T::in_height * CONFIG_T::in_width; p++) {
        #pragma HLS PIPELINE
        image[p] = data.read();
    }
OutputRow:
    for (int i = 0; i < (int)CONFIG_T::out_height; i++) {
        const int si = mirror_pad_source<CONFIG_T::mode>(i - CONFIG_T::pad_top, CONFIG_T::in_height);
    OutputPixel:
        for (int j = 0; j < (int)CONFIG_T::out_width; j++) {
            #pragma HLS PIPELINE
            const int sj = mirror_pad_source<CONFIG_T::mode>(j - CONFIG_T::pad_left, CONFIG_T::in_width);
            res_T out_data;
            PRAGMA_DATA_PACK(out_data)
        OutputChannel:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                out_data[c] = image[si * CONFIG_T::in_width + sj][c];
            }
            res.write(out_data);
        }
    }
}

} // namespace nnet

#endif
