// The communicator behind a JS object made by createCommunicator (bind_parallel.cc), for the trainer's
// setCommunicator (bind_model.cc).
#pragma once
#include <napi.h>

#include <memory>

#include "../parallel/comm.h"

namespace dsmoe::bind {

// Throws a TypeError when `v` is not a communicator made by createCommunicator.
std::shared_ptr<dist::Communicator> communicator_of(Napi::Value v);

}  // namespace dsmoe::bind
