#ifndef QDEPLOY_WEIGHTS_DIR_H_
#define QDEPLOY_WEIGHTS_DIR_H_

// Written by qdeploy into hls4ml's firmware/ folder. The C-simulation library reads the weights of its layers from
// the weights/ folder beside itself, found when the library is loaded: hls4ml bakes the absolute path of the build
// folder into the library instead, which breaks the project once it is moved or copied (and would read whatever
// weights a later folder at that path holds). Not used by the vendor build: its synthesis takes the weights from the
// headers in weights/.

#include <dlfcn.h>
#include <string>

static inline std::string qdeploy_weights_dir() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&qdeploy_weights_dir), &info) != 0 && info.dli_fname != nullptr) {
        const std::string library(info.dli_fname);
        const std::string::size_type slash = library.rfind('/');
        return (slash == std::string::npos ? std::string(".") : library.substr(0, slash)) + "/weights";
    }
    return "firmware/weights"; // relative to the project folder, where hls4ml's build_lib.sh runs
}

#endif
