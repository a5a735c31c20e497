// MultiThreshold for hls4ml (written by qdeploy): out = out_bias + out_scale * #{ j : in >= threshold[c][j] }.
// Exact for any thresholds: each comparison is between two fixed-point values, with no arithmetic on them.
// Channels are the innermost (channels-last) index; a single row of thresholds is shared by every element.
#ifndef NNET_MULTITHRESHOLD_H_
#define NNET_MULTITHRESHOLD_H_

#include "nnet_common.h"

namespace nnet {

struct multithreshold_config {
    static const unsigned n_in = 1;
    static const unsigned n_chan = 1;
    static const unsigned n_thresholds = 1;
    static const int out_scale = 1;
    static const int out_bias = 0;
    typedef float threshold_t;
};

template <class data_T, class res_T, typename CONFIG_T>
res_T multithreshold_one(data_T value, const typename CONFIG_T::threshold_t *row) {
    int count = 0;
    for (unsigned j = 0; j < CONFIG_T::n_thresholds; j++) {
        #pragma HLS UNROLL
        count += (value >= row[j]) ? 1 : 0;
    }
    return (res_T)(CONFIG_T::out_bias + CONFIG_T::out_scale * count);
}

template <class data_T, class res_T, typename CONFIG_T>
void multithreshold(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                    const typename CONFIG_T::threshold_t thresholds[CONFIG_T::n_chan * CONFIG_T::n_thresholds]) {
    #pragma HLS ARRAY_PARTITION variable=thresholds complete
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        const unsigned channel = (CONFIG_T::n_chan == 1) ? 0 : i % CONFIG_T::n_chan;
        res[i] = multithreshold_one<data_T, res_T, CONFIG_T>(data[i], &thresholds[channel * CONFIG_T::n_thresholds]);
    }
}

} // namespace nnet

#endif
