// The op schemas, in one place. Kernels register per backend in cpu/ and cuda/;
// shape functions for torch.compile live in embodied/ops/_fake.py.
#include <torch/library.h>

TORCH_LIBRARY(embodied, m) {
  m.def(
      "gae(Tensor rewards, Tensor values, Tensor dones, Tensor next_value, float gamma, "
      "float lam) -> (Tensor advantages, Tensor returns)");
  // Writes into preallocated buffers (a rollout storage's), saving the allocation and
  // first-touch page faults of two [T, N] outputs per call.
  m.def(
      "gae_into(Tensor rewards, Tensor values, Tensor dones, Tensor next_value, float gamma, "
      "float lam, Tensor(a!) advantages, Tensor(b!) returns) -> ()");
  m.def("vlm_rm_reward(Tensor image_embeds, Tensor goal, Tensor baseline, float alpha) -> Tensor");
  m.def(
      "running_normalize(Tensor x, Tensor(a!) mean, Tensor(b!) var, Tensor(c!) count, "
      "bool update, bool center, float eps, float clip) -> Tensor");
  m.def(
      "perceptual_reward(Tensor features, Tensor index, Tensor mean, Tensor inv_std, "
      "Tensor step_weights, bool log_space=False) -> (Tensor reward, Tensor step_scores)");
}
