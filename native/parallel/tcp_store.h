// gloo::rendezvous::Store over the small TCP key-value service the rank-0 launcher hosts
// (src/parallel/store.ts). It only carries the rendezvous (each rank's transport address); the
// all-reduce itself runs over Gloo's TCP transport.
//
// Protocol (one connection per store, requests answered in order):
//   set:  'S' u32le keylen, key, u32le len, value        → u8 1
//   get:  'G' u32le keylen, key                          → u8 0 (absent) | u8 1, u32le len, value
// wait() and get() poll get until the key exists or the timeout passes.
#pragma once
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

namespace dsmoe::dist {

class TcpStore : public gloo::rendezvous::Store {
 public:
  // Connects (retrying until `timeout`: the launcher that hosts the service may start later).
  TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout);
  ~TcpStore() override;
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;
  // get without waiting: false when the key is absent.
  bool try_get(const std::string& key, std::vector<char>* out);

 private:
  void send_all(const void* p, size_t n);
  void recv_all(void* p, size_t n);
  std::string where_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::mutex mu_;
};

}  // namespace dsmoe::dist
