// Edge, reflect and wrap padding (ONNX Pad modes) for hls4ml's io_parallel, channels-last (written by qdeploy).
// Output pixel (i, j) copies input pixel (map(i - pad_top, in_height), map(j - pad_left, in_width)).
#ifndef NNET_MIRROR_PAD_H_
#define NNET_MIRROR_PAD_H_

#include "nnet_common.h"

namespace nnet {

struct mirror_pad_config {
    static const unsigned in_height = 1;
    static const unsigned in_width = 1;
    static const unsigned n_chan = 1;
    static const unsigned out_height = 1;
    static const unsigned out_width = 1;
    static const int pad_top = 0;
    static const int pad_left = 0;
    static const int mode = 0; // 0 edge, 1 reflect, 2 wrap
};

template <int mode> constexpr int mirror_pad_source(int x, int n) {
    return mode == 0   ? (x < 0 ? 0 : (x >= n ? n - 1 : x))
           : mode == 1 ? (x < 0 ? -x : (x >= n ? 2 * (n - 1) - x : x))
                       : ((x % n) + n) % n;
}

template <class data_T, class res_T, typename CONFIG_T>
void mirror_pad(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan]) {
    #pragma HLS PIPELINE
    for (int i = 0; i < (int)CONFIG_T::out_height; i++) {
        const int si = mirror_pad_source<CONFIG_T::mode>(i - CONFIG_T::pad_top, CONFIG_T::in_height);
        for (int j = 0; j < (int)CONFIG_T::out_width; j++) {
            const int sj = mirror_pad_source<CONFIG_T::mode>(j - CONFIG_T::pad_left, CONFIG_T::in_width);
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                res[(i * CONFIG_T::out_width + j) * CONFIG_T::n_chan + c] =
                    data[(si * CONFIG_T::in_width + sj) * CONFIG_T::n_chan + c];
            }
        }
    }
}

} // namespace nnet

#endif
