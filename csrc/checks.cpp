#include "embodied/checks.h"

#include <ATen/Dispatch.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <sstream>

namespace embodied {
namespace {

bool is_real_float(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

void check_same_device(const char* op, const at::Tensor& ref, const char* ref_name,
                       const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ",
                    ref_name, " is on ", ref.device(), "; move all inputs to one device");
}

void check_unit_interval(const char* op, const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0.0 && v <= 1.0, op, ": ", name,
                    " must be in [0, 1], got ", v);
}

}  // namespace

void check_gae_inputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                      const at::Tensor& next_value, double gamma, double lam) {
  constexpr const char* op = "embodied.ops.gae";
  TORCH_CHECK_VALUE(rewards.dim() == 2, op, ": rewards must be [T, N] (time-major), got shape ",
                    rewards.sizes(), "; add a trailing env dimension for a single env");
  TORCH_CHECK_VALUE(rewards.size(0) > 0 && rewards.size(1) > 0, op,
                    ": rewards must have at least one step and one env, got shape ", rewards.sizes());
  TORCH_CHECK_TYPE(is_real_float(rewards), op, ": rewards must be float32 or float64, got ",
                   rewards.scalar_type());
  TORCH_CHECK_VALUE(values.sizes() == rewards.sizes(), op, ": values must have the shape of rewards ",
                    rewards.sizes(), ", got ", values.sizes());
  TORCH_CHECK_VALUE(dones.sizes() == rewards.sizes(), op, ": dones must have the shape of rewards ",
                    rewards.sizes(), ", got ", dones.sizes());
  TORCH_CHECK_VALUE(next_value.dim() == 1 && next_value.size(0) == rewards.size(1), op,
                    ": next_value must be [N] = [", rewards.size(1),
                    "] (the value of the observation after the last step), got shape ",
                    next_value.sizes());
  TORCH_CHECK_TYPE(values.scalar_type() == rewards.scalar_type() &&
                       next_value.scalar_type() == rewards.scalar_type(),
                   op, ": rewards, values and next_value must share one dtype, got ",
                   rewards.scalar_type(), ", ", values.scalar_type(), " and ",
                   next_value.scalar_type());
  const auto dt = dones.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kBool || dt == at::kByte || dt == at::kFloat || dt == at::kDouble, op,
                   ": dones must be bool, uint8, float32 or float64, got ", dt);
  check_same_device(op, rewards, "rewards", values, "values");
  check_same_device(op, rewards, "rewards", dones, "dones");
  check_same_device(op, rewards, "rewards", next_value, "next_value");
  check_unit_interval(op, "gamma", gamma);
  check_unit_interval(op, "lam", lam);
}

void check_gae_outputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                       const at::Tensor& next_value, const at::Tensor& advantages,
                       const at::Tensor& returns) {
  constexpr const char* op = "embodied.ops.gae";
  for (const auto& [name, out] : {NamedTensor{"advantages", &advantages}, NamedTensor{"returns", &returns}}) {
    TORCH_CHECK_VALUE(out->sizes() == rewards.sizes(), op, ": out ", name,
                      " must have the shape of rewards ", rewards.sizes(), ", got ", out->sizes());
    TORCH_CHECK_TYPE(out->scalar_type() == rewards.scalar_type(), op, ": out ", name,
                     " must have the dtype of rewards (", rewards.scalar_type(), "), got ",
                     out->scalar_type());
    check_same_device(op, rewards, "rewards", *out, name);
    TORCH_CHECK_VALUE(out->is_contiguous(), op, ": out ", name,
                      " must be contiguous; pass a .contiguous() buffer or omit out=");
    for (const auto& [in_name, in] :
         {NamedTensor{"rewards", &rewards}, NamedTensor{"values", &values},
          NamedTensor{"dones", &dones}, NamedTensor{"next_value", &next_value}}) {
      TORCH_CHECK_VALUE(at::get_overlap_status(*out, *in) == at::MemOverlapStatus::No, op,
                        ": out ", name, " shares memory with ", in_name,
                        "; the op cannot work in place, pass separate buffers");
    }
  }
  TORCH_CHECK_VALUE(at::get_overlap_status(advantages, returns) == at::MemOverlapStatus::No, op,
                    ": out advantages and returns share memory; pass separate buffers");
}

void check_vlm_rm_inputs(const at::Tensor& image_embeds, const at::Tensor& goal,
                         const at::Tensor& baseline, double alpha) {
  constexpr const char* op = "embodied.ops.vlm_rm_reward";
  TORCH_CHECK_VALUE(image_embeds.dim() == 2, op, ": image_embeds must be [B, D], got shape ",
                    image_embeds.sizes());
  TORCH_CHECK_VALUE(image_embeds.size(1) > 0, op, ": the embedding dimension D must be > 0");
  TORCH_CHECK_TYPE(is_real_float(image_embeds), op,
                   ": image_embeds must be float32 or float64, got ", image_embeds.scalar_type(),
                   "; cast half-precision embeddings with .float()");
  const auto d = image_embeds.size(1);
  TORCH_CHECK_VALUE(goal.dim() == 1 && goal.size(0) == d, op, ": goal must be [D] = [", d,
                    "], got shape ", goal.sizes());
  TORCH_CHECK_VALUE(baseline.dim() == 1 && baseline.size(0) == d, op, ": baseline must be [D] = [",
                    d, "], got shape ", baseline.sizes());
  TORCH_CHECK_TYPE(goal.scalar_type() == image_embeds.scalar_type() &&
                       baseline.scalar_type() == image_embeds.scalar_type(),
                   op, ": image_embeds, goal and baseline must share one dtype, got ",
                   image_embeds.scalar_type(), ", ", goal.scalar_type(), " and ",
                   baseline.scalar_type());
  check_same_device(op, image_embeds, "image_embeds", goal, "goal");
  check_same_device(op, image_embeds, "image_embeds", baseline, "baseline");
  check_unit_interval(op, "alpha", alpha);
}

void throw_gae_nonfinite(const at::Tensor& rewards, const at::Tensor& values,
                         const at::Tensor& dones, const at::Tensor& next_value) {
  throw_nonfinite("embodied.ops.gae",
                  {{"rewards", &rewards}, {"values", &values}, {"dones", &dones},
                   {"next_value", &next_value}},
                  "the discounted sum overflowed; scale the rewards down");
}

void check_vlm_rm_goal(double gg, double dd, double alpha, const at::Tensor& goal,
                       const at::Tensor& baseline) {
  constexpr const char* op = "embodied.ops.vlm_rm_reward";
  if (!std::isfinite(gg + dd)) {
    throw_nonfinite(op, {{"goal", &goal}, {"baseline", &baseline}},
                    "the goal or baseline embedding is far too large");
  }
  TORCH_CHECK_VALUE(alpha == 0.0 || dd > 0.0, op,
                    ": goal and baseline are identical, so the goal-baseline direction is "
                    "undefined; use different baseline prompts or alpha=0");
}

void throw_vlm_rm_nonfinite(const at::Tensor& image_embeds, const at::Tensor& goal,
                            const at::Tensor& baseline) {
  throw_nonfinite("embodied.ops.vlm_rm_reward",
                  {{"image_embeds", &image_embeds}, {"goal", &goal}, {"baseline", &baseline}},
                  "an embedding's squared norm overflowed; the embeddings are far too large");
}

void check_running_norm_inputs(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& var,
                               const at::Tensor& count, double eps, double clip) {
  constexpr const char* op = "embodied.ops.running_normalize";
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(0) > 0, op,
                    ": x must be [B, *feature_shape] with B >= 1, got shape ", x.sizes());
  TORCH_CHECK_TYPE(is_real_float(x), op, ": x must be float32 or float64, got ", x.scalar_type());
  const auto features = x.sizes().slice(1);
  TORCH_CHECK_VALUE(mean.sizes() == features && var.sizes() == features, op,
                    ": mean and var must have x's feature shape ", features, ", got ", mean.sizes(),
                    " and ", var.sizes());
  TORCH_CHECK_TYPE(is_real_float(mean) && var.scalar_type() == mean.scalar_type(), op,
                   ": mean and var must be float32 or float64 of one dtype, got ",
                   mean.scalar_type(), " and ", var.scalar_type());
  TORCH_CHECK_VALUE(count.dim() == 0, op, ": count must be a 0-dim tensor, got shape ",
                    count.sizes());
  TORCH_CHECK_TYPE(count.scalar_type() == at::kDouble, op, ": count must be float64, got ",
                   count.scalar_type());
  for (const auto& t : {&mean, &var, &count}) {
    TORCH_CHECK_VALUE(t->is_contiguous(), op, ": running statistics must be contiguous tensors");
  }
  check_same_device(op, x, "x", mean, "mean");
  check_same_device(op, x, "x", var, "var");
  check_same_device(op, x, "x", count, "count");
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0.0, op, ": eps must be > 0, got ", eps);
  TORCH_CHECK_VALUE(clip > 0.0, op, ": clip must be > 0 (inf disables clipping), got ", clip);
}

void throw_running_norm_nonfinite(const at::Tensor& x, const at::Tensor& mean,
                                  const at::Tensor& var, bool batch_overflow) {
  throw_nonfinite("embodied.ops.running_normalize", {{"x", &x}, {"mean", &mean}, {"var", &var}},
                  batch_overflow ? "x is so large that its variance overflowed"
                                 : "the variance is negative; the running statistics were corrupted");
}

void check_perceptual_inputs(const at::Tensor& features, const at::Tensor& index,
                             const at::Tensor& mean, const at::Tensor& inv_std,
                             const at::Tensor& step_weights) {
  constexpr const char* op = "embodied.ops.perceptual_reward";
  TORCH_CHECK_VALUE(features.dim() == 2, op, ": features must be [B, D], got shape ",
                    features.sizes());
  TORCH_CHECK_VALUE(features.size(1) > 0, op, ": the feature dimension D must be > 0");
  TORCH_CHECK_TYPE(is_real_float(features), op, ": features must be float32 or float64, got ",
                   features.scalar_type(), "; cast half-precision features with .float()");
  TORCH_CHECK_VALUE(index.dim() == 2, op,
                    ": index must be [K, n] (n selected feature indices for each of K steps), "
                    "got shape ", index.sizes());
  TORCH_CHECK_VALUE(index.size(0) > 0 && index.size(1) > 0, op,
                    ": index must select at least one feature (n >= 1) for at least one step "
                    "(K >= 1), got shape ", index.sizes());
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong, op, ": index must be int64, got ",
                   index.scalar_type(), "; convert it with .long()");
  TORCH_CHECK_VALUE(mean.sizes() == index.sizes(), op, ": mean must be [K, n] = ", index.sizes(),
                    " like index, got shape ", mean.sizes());
  TORCH_CHECK_VALUE(inv_std.sizes() == index.sizes(), op, ": inv_std must be [K, n] = ",
                    index.sizes(), " like index, got shape ", inv_std.sizes());
  TORCH_CHECK_VALUE(step_weights.dim() == 1 && step_weights.size(0) == index.size(0), op,
                    ": step_weights must be [K] = [", index.size(0), "], got shape ",
                    step_weights.sizes());
  const auto dt = features.scalar_type();
  TORCH_CHECK_TYPE(mean.scalar_type() == dt && inv_std.scalar_type() == dt &&
                       step_weights.scalar_type() == dt,
                   op, ": features, mean, inv_std and step_weights must share one dtype, got ", dt,
                   ", ", mean.scalar_type(), ", ", inv_std.scalar_type(), " and ",
                   step_weights.scalar_type());
  check_same_device(op, features, "features", index, "index");
  check_same_device(op, features, "features", mean, "mean");
  check_same_device(op, features, "features", inv_std, "inv_std");
  check_same_device(op, features, "features", step_weights, "step_weights");
}

void check_perceptual_parameters(int64_t D, const at::Tensor& index, const at::Tensor& mean,
                                 const at::Tensor& inv_std, const at::Tensor& step_weights,
                                 bool log_space) {
  constexpr const char* op = "embodied.ops.perceptual_reward";
  const int64_t K = index.size(0), n = index.size(1);
  const int64_t* idx = index.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < K * n; ++i) {
    TORCH_CHECK_VALUE(idx[i] >= 0 && idx[i] < D, op, ": index[", i / n, ", ", i % n, "] = ",
                      idx[i], " is out of range for features of dimension D = ", D,
                      "; every index must be in [0, D)");
  }
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "embodied_check_perceptual_parameters", [&] {
    const scalar_t* m = mean.const_data_ptr<scalar_t>();
    const scalar_t* s = inv_std.const_data_ptr<scalar_t>();
    const scalar_t* w = step_weights.const_data_ptr<scalar_t>();
    bool finite = true;
    for (int64_t i = 0; i < K * n; ++i) finite &= std::isfinite(m[i]);
    for (int64_t g = 0; g < K; ++g) finite &= std::isfinite(w[g]);
    if (!finite) throw_nonfinite(op, {{"mean", &mean}, {"step_weights", &step_weights}}, "");
    for (int64_t g = 0; log_space && g < K; ++g) {
      TORCH_CHECK_VALUE(w[g] > 0, op, ": step_weights[", g, "] = ", w[g],
                        " must be > 0 with log_space=True (the log of the weighted sum takes the "
                        "log of each weight); drop the step or give it a positive weight");
    }
    for (int64_t i = 0; i < K * n; ++i) {
      TORCH_CHECK_VALUE(std::isfinite(s[i]) && s[i] > 0, op, ": inv_std[", i / n, ", ", i % n,
                        "] = ", s[i],
                        " must be finite and > 0 (1 / the positives' standard deviation); clamp "
                        "the deviation away from 0 before inverting it");
    }
  });
}

void check_perceptual_features(const at::Tensor& features, const at::Tensor& index) {
  const at::Tensor selected =
      at::zeros({features.size(1)}, features.options().dtype(at::kBool))
          .index_fill_(0, index.flatten(), true);
  const at::Tensor bad =
      at::nonzero(at::logical_and(at::logical_not(at::isfinite(features)), selected)).cpu();
  if (bad.size(0) == 0) return;
  TORCH_CHECK_VALUE(false, "embodied.ops.perceptual_reward: features[", bad[0][0].item<int64_t>(),
                    ", ", bad[0][1].item<int64_t>(), "] is not finite (", bad.size(0),
                    " non-finite selected element(s) in features); check whatever produced it, "
                    "the op never ignores NaN or Inf");
}

void throw_nonfinite(const char* op, std::initializer_list<NamedTensor> inputs,
                     const std::string& otherwise) {
  for (const auto& [name, tensor] : inputs) {
    if (!tensor->is_floating_point()) continue;
    const at::Tensor bad = at::nonzero(at::logical_not(at::isfinite(*tensor))).cpu();
    if (bad.size(0) == 0) continue;
    std::ostringstream where;
    for (int64_t i = 0; i < bad.size(1); ++i) {
      where << (i ? ", " : "") << bad[0][i].item<int64_t>();
    }
    TORCH_CHECK_VALUE(false, op, ": ", name, "[", where.str(), "] is not finite (",
                      bad.size(0), " non-finite element(s) in ", name,
                      "); check whatever produced it, the op never ignores NaN or Inf");
  }
  TORCH_CHECK_VALUE(false, op, ": the result is not finite although every input is: ", otherwise);
}

}  // namespace embodied
