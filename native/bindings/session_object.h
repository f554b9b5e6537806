// Making an inference-session object over weights that are already open: shared by openWeights
// (bind_infer.cc) and the trainer's routed evaluation over its live parameters (bind_model.cc).
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "../infer/weights.h"
#include "args.h"

namespace dsmoe::bind {

// Reads {batch, maxLen?, routing?} from args (routing falls back to routing_fallback, a
// {attention, mlp} object or undefined, then to dense) and returns the session object; keep_alive
// holds whatever owns the weights' memory for as long as the session lives.
Napi::Value create_session_over(Args& args, std::shared_ptr<const infer::Weights> w, Napi::Value routing_fallback,
                                std::vector<Napi::Reference<Napi::Value>> keep_alive);

}  // namespace dsmoe::bind
