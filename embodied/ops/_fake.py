"""Fake (meta) kernels: output shapes for torch.compile and FakeTensor tracing."""

from __future__ import annotations

import torch

from embodied.ops import validate


@torch.library.register_fake("embodied::gae")
def _gae_fake(rewards, values, dones, next_value, gamma, lam):
    validate.gae_inputs(rewards, values, dones, next_value, gamma, lam)
    return torch.empty_like(rewards, memory_format=torch.contiguous_format), \
        torch.empty_like(rewards, memory_format=torch.contiguous_format)


@torch.library.register_fake("embodied::gae_into")
def _gae_into_fake(rewards, values, dones, next_value, gamma, lam, advantages, returns):
    validate.gae_inputs(rewards, values, dones, next_value, gamma, lam)
    validate.gae_outputs(rewards, values, dones, next_value, advantages, returns, check_overlap=False)


@torch.library.register_fake("embodied::vlm_rm_reward")
def _vlm_rm_reward_fake(image_embeds, goal, baseline, alpha):
    validate.vlm_rm_inputs(image_embeds, goal, baseline, alpha)
    return image_embeds.new_empty(image_embeds.shape[0])


@torch.library.register_fake("embodied::running_normalize")
def _running_normalize_fake(x, mean, var, count, update, center, eps, clip):
    validate.running_norm_inputs(x, mean, var, count, eps, clip)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("embodied::perceptual_reward")
def _perceptual_reward_fake(features, index, mean, inv_std, step_weights, log_space=False):
    validate.perceptual_inputs(features, index, mean, inv_std, step_weights)
    return features.new_empty(features.shape[0]), features.new_empty(features.shape[0], index.shape[0])
