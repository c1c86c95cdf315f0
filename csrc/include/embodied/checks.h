#pragma once

// Input validation shared by the CPU and CUDA implementations of every op, so
// both backends reject the same inputs with the same messages.

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace embodied {

using NamedTensor = std::pair<const char*, const at::Tensor*>;

void check_gae_inputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                      const at::Tensor& next_value, double gamma, double lam);

// The out= buffers: contiguous, shaped and typed like rewards, on its device, and
// sharing no memory with any input or with each other.
void check_gae_outputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                       const at::Tensor& next_value, const at::Tensor& advantages,
                       const at::Tensor& returns);

void check_vlm_rm_inputs(const at::Tensor& image_embeds, const at::Tensor& goal,
                         const at::Tensor& baseline, double alpha);

// The result of gae came out non-finite: name the input responsible.
[[noreturn]] void throw_gae_nonfinite(const at::Tensor& rewards, const at::Tensor& values,
                                      const at::Tensor& dones, const at::Tensor& next_value);

// After the goal/baseline dot products (gg = g.g, dd = |g - b|^2): both finite, and a
// goal-baseline direction exists unless alpha == 0.
void check_vlm_rm_goal(double gg, double dd, double alpha, const at::Tensor& goal,
                       const at::Tensor& baseline);

// Some reward came out non-finite: name the input responsible.
[[noreturn]] void throw_vlm_rm_nonfinite(const at::Tensor& image_embeds, const at::Tensor& goal,
                                         const at::Tensor& baseline);

void check_running_norm_inputs(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& var,
                               const at::Tensor& count, double eps, double clip);

// A non-finite batch moment (batch_overflow) or output: name the input responsible.
[[noreturn]] void throw_running_norm_nonfinite(const at::Tensor& x, const at::Tensor& mean,
                                               const at::Tensor& var, bool batch_overflow);

void check_perceptual_inputs(const at::Tensor& features, const at::Tensor& index,
                             const at::Tensor& mean, const at::Tensor& inv_std,
                             const at::Tensor& step_weights);

// The parameters' values, given as contiguous CPU tensors: every index in [0, D), mean and
// step_weights finite, inv_std finite and > 0, and in log space step_weights > 0.
void check_perceptual_parameters(int64_t D, const at::Tensor& index, const at::Tensor& mean,
                                 const at::Tensor& inv_std, const at::Tensor& step_weights,
                                 bool log_space);

// Called when some step's squared distance came out non-finite: throws naming the first
// non-finite selected feature, and returns when there is none (the distance overflowed, and
// its score of 0, or -inf in log space, is right). Unselected features are never read, so
// never blamed.
void check_perceptual_features(const at::Tensor& features, const at::Tensor& index);

// Called when an op's result came out non-finite: finds the first non-finite input
// element (the error path may be slow) and throws a ValueError naming it.
[[noreturn]] void throw_nonfinite(const char* op, std::initializer_list<NamedTensor> inputs,
                                  const std::string& otherwise);

}  // namespace embodied
