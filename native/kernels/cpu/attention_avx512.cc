// The AVX-512 build of attention_impl.inc (see attention.cc).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../../core/aligned_buffer.h"
#include "../../core/threadpool.h"
#include "attention.h"
#include "vecmath.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
// prefer-vector-width=512: GCC's default tuning auto-vectorises with 256-bit vectors even when
// AVX-512 is enabled; these loops are all the point of this file.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")
#define ATTN_NS attn_avx512
#include "attention_impl.inc"
#undef ATTN_NS
#pragma GCC pop_options
#else
#define ATTN_NS attn_avx512
#include "attention_impl.inc"
#undef ATTN_NS
#endif
