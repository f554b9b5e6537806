#include "tcp_store.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace dsmoe::dist {
namespace {

int connect_once(const std::string& host, int port, std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    *err = gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    *err = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

void put_u32(std::vector<char>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A request: the op byte, then the key with its length.
std::vector<char> request(char op, const std::string& key) {
  std::vector<char> b{op};
  put_u32(b, static_cast<uint32_t>(key.size()));
  b.insert(b.end(), key.begin(), key.end());
  return b;
}

}  // namespace

TcpStore::TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout)
    : where_(host + ":" + std::to_string(port)), timeout_(timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string err;
  for (;;) {
    fd_ = connect_once(host, port, &err);
    if (fd_ >= 0) return;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("cannot reach the rendezvous service at " + where_ + " (" + err + ") within " +
                               std::to_string(timeout.count() / 1000) + " s: is the launcher of node rank 0 running "
                               "there (--master ADDR:PORT)?");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) close(fd_);
}

void TcpStore::send_all(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::send(fd_, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error("the rendezvous service at " + where_ + " closed the connection");
    c += k;
    n -= static_cast<size_t>(k);
  }
}

void TcpStore::recv_all(void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = ::recv(fd_, c, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error("the rendezvous service at " + where_ + " closed the connection");
    c += k;
    n -= static_cast<size_t>(k);
  }
}

void TcpStore::set(const std::string& key, const std::vector<char>& data) {
  std::vector<char> b = request('S', key);
  put_u32(b, static_cast<uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  std::lock_guard<std::mutex> lock(mu_);
  send_all(b.data(), b.size());
  char ack = 0;
  recv_all(&ack, 1);
}

bool TcpStore::try_get(const std::string& key, std::vector<char>* out) {
  const std::vector<char> b = request('G', key);
  std::lock_guard<std::mutex> lock(mu_);
  send_all(b.data(), b.size());
  char found = 0;
  recv_all(&found, 1);
  if (!found) return false;
  unsigned char len[4];
  recv_all(len, 4);
  const uint32_t n = uint32_t(len[0]) | uint32_t(len[1]) << 8 | uint32_t(len[2]) << 16 | uint32_t(len[3]) << 24;
  out->resize(n);
  if (n > 0) recv_all(out->data(), n);
  return true;
}

std::vector<char> TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> out;
  if (!try_get(key, &out)) throw std::runtime_error("rendezvous key " + key + " vanished from " + where_);
  return out;
}

void TcpStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<char> scratch;
  for (const std::string& k : keys) {
    while (!try_get(k, &scratch)) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("rendezvous: timed out after " + std::to_string(timeout.count() / 1000) +
                                 " s waiting for key " + k + " at " + where_ + " (a rank did not start or join)");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

}  // namespace dsmoe::dist
