#pragma once
// The HTTP front of the scheduler: OpenAI-style routes (chat and text
// completions, streamed as server-sent events or whole), /v1/models, /health,
// /metrics (Prometheus text), /tokenize, /detokenize and a chat page at /.
// HTTP threads parse and validate; the scheduler's engine thread computes.
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "server/api.h"

namespace kestrel::server {

// A lossy switch as the accuracy guard measured it alone at start-up
// (runtime/accuracy_guard.h), for /metrics.
struct GuardedSwitch {
  std::string name, value;
  double kld = 0.0, top1 = 1.0;
  double memory_ratio = 1.0;  // weights + KV pool with it over without it
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0 = any free port
  std::string api_key;          // "" = no auth
  size_t max_body_bytes = 1 << 20;
  int http_threads = 64;        // connections served at once (streams hold one each)
  std::string model_name;       // what /v1/models and responses call the model
  std::string chat_template;    // "" = the model's own
  ApiLimits limits;
  std::vector<GuardedSwitch> guarded;  // empty: no start-up measurement
};

class Server {
 public:
  Server(const Model& model, Scheduler& scheduler, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket; returns the port. Throws kestrel::Error when it cannot.
  int bind();
  // Serves until shutdown() is called (from another thread).
  void run();
  // Refuses new generation requests (503), waits up to drain_seconds for the
  // running ones to be answered, then stops the listener so run() returns.
  void shutdown(double drain_seconds);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The chat page served at / (HTML with its JavaScript inline).
const char* chat_page_html();

}  // namespace kestrel::server
