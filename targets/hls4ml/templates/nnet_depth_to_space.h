// DepthToSpace (pixel shuffle) for hls4ml's io_parallel, channels-last (written by qdeploy).
// Input H x W x (C * b * b), output (H * b) x (W * b) x C. Output pixel (h * b + i, w * b + j), channel c reads input
// pixel (h, w), channel (i * b + j) * C + c in ONNX's DCR mode and c * b * b + i * b + j in CRD mode.
#ifndef NNET_DEPTH_TO_SPACE_H_
#define NNET_DEPTH_TO_SPACE_H_

#include "nnet_common.h"

namespace nnet {

struct depth_to_space_config {
    static const unsigned in_height = 1;
    static const unsigned in_width = 1;
    static const unsigned n_chan = 1;
    static const unsigned block = 2;
    static const bool crd = false;
};

template <typename CONFIG_T> constexpr unsigned depth_to_space_source_channel(unsigned i, unsigned j, unsigned c) {
    return CONFIG_T::crd ? (c * CONFIG_T::block + i) * CONFIG_T::block + j
                         : (i * CONFIG_T::block + j) * CONFIG_T::n_chan + c;
}

template <class data_T, class res_T, typename CONFIG_T>
void depth_to_space(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan * CONFIG_T::block *
                                CONFIG_T::block],
                    res_T res[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan * CONFIG_T::block *
                              CONFIG_T::block]) {
    #pragma HLS PIPELINE
    const unsigned b = CONFIG_T::block;
    const unsigned in_depth = CONFIG_T::n_chan * b * b;
    const unsigned out_width = CONFIG_T::in_width * b;
    for (unsigned h = 0; h < CONFIG_T::in_height; h++) {
        for (unsigned w = 0; w < CONFIG_T::in_width; w++) {
            for (unsigned i = 0; i < b; i++) {
                for (unsigned j = 0; j < b; j++) {
                    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                        res[((h * b + i) * out_width + w * b + j) * CONFIG_T::n_chan + c] =
                            data[(h * CONFIG_T::in_width + w) * in_depth + depth_to_space_source_channel<CONFIG_T>(i, j, c)];
                    }
                }
            }
        }
    }
}

} // namespace nnet

#endif
