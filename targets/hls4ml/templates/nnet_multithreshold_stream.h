// Streaming MultiThreshold for hls4ml's Vivado/Vitis io_stream (written by qdeploy); see nnet_multithreshold.h.
#ifndef NNET_MULTITHRESHOLD_STREAM_H_
#define NNET_MULTITHRESHOLD_STREAM_H_

#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_multithreshold.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void multithreshold(hls::stream<data_T> &data, hls::stream<res_T> &res,
                    const typename CONFIG_T::threshold_t thresholds[CONFIG_T::n_chan * CONFIG_T::n_thresholds]) {
    #pragma HLS ARRAY_PARTITION variable=thresholds complete
ThresholdLoop:
    for (unsigned i = 0; i < CONFIG_T::n_in / data_T::size; i++) {
        #pragma HLS PIPELINE
        data_T in_data = data.read();
        res_T out_data;
        PRAGMA_DATA_PACK(out_data)
    ThresholdPack:
        for (unsigned j = 0; j < data_T::size; j++) {
            #pragma HLS UNROLL
            const unsigned index = i * data_T::size + j;
            const unsigned channel = (CONFIG_T::n_chan == 1) ? 0 : index % CONFIG_T::n_chan;
            out_data[j] = multithreshold_one<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(
                in_data[j], &thresholds[channel * CONFIG_T::n_thresholds]);
        }
        res.write(out_data);
    }
}

} // namespace nnet

#endif
