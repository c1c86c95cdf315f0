// The Python module embodied._C: importing it registers the ops with torch.
// It also records which backends this build compiled.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "embodied/mujoco_batch.h"

#include <string>
#include <vector>

PYBIND11_MODULE(_C, m) {
  std::vector<std::string> backends{"cpu"};
#ifdef EMBODIED_WITH_CUDA
  backends.emplace_back("cuda");
#endif
  m.attr("compiled_backends") = backends;
  embodied::bind_mujoco_batch(m);
}
