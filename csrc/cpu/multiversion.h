#pragma once

// The package is compiled for baseline x86-64 (SSE2) so one build runs on any x86
// CPU. Hot loops are additionally compiled for AVX2+FMA and picked at run time:
// the loop body is an always-inline function, instantiated once inside a function
// carrying target("avx2,fma") and once in default code.
#if defined(__GNUC__) && defined(__x86_64__)
#define EMBODIED_X86_MULTIVERSION 1
#define EMBODIED_ALWAYS_INLINE [[gnu::always_inline]] inline
#define EMBODIED_TARGET_AVX2 [[gnu::target("avx2,fma")]]
#else
#define EMBODIED_X86_MULTIVERSION 0
#define EMBODIED_ALWAYS_INLINE inline
#define EMBODIED_TARGET_AVX2
#endif

namespace embodied {

inline bool cpu_has_avx2() {
#if EMBODIED_X86_MULTIVERSION
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace embodied
