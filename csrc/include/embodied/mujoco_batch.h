// Batched MuJoCo stepping in native threads (bound into embodied._C for sim/mujoco).
#pragma once

#include <pybind11/pybind11.h>

namespace embodied {

// Adds `mujoco_step_batch` to the extension module.
void bind_mujoco_batch(pybind11::module_& m);

}  // namespace embodied
