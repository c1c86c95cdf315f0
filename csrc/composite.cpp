// Device-agnostic kernels built from other embodied ops through the dispatcher, so
// each backend implements only the primitive.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

namespace embodied {
namespace {

// gae = allocate two [T, N] outputs, then gae_into (which validates everything).
std::tuple<at::Tensor, at::Tensor> gae(const at::Tensor& rewards, const at::Tensor& values,
                                       const at::Tensor& dones, const at::Tensor& next_value,
                                       double gamma, double lam) {
  static const auto gae_into =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("embodied::gae_into", "")
          .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      double, double, at::Tensor&, at::Tensor&)>();
  at::Tensor advantages = at::empty(rewards.sizes(), rewards.options());
  at::Tensor returns = at::empty(rewards.sizes(), rewards.options());
  gae_into.call(rewards, values, dones, next_value, gamma, lam, advantages, returns);
  return {advantages, returns};
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CompositeExplicitAutograd, m) { m.impl("gae", &gae); }

}  // namespace embodied
