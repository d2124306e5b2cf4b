#include "server/server.h"

#include <dirent.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "switches/registry.h"

namespace kestrel::server {
namespace {

using Clock = std::chrono::steady_clock;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = "") {
  send_json(res, status, error_body(message, type, param));
}

// Events of one request, handed from the engine thread to the HTTP thread.
// Both own it: the HTTP thread may return (and drop its reference) as soon as
// it has the last event, while the engine thread is still inside the sink.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<CompletionEvent> events;
  std::atomic<bool> closed{false};  // the client is gone: cancel on the next event

  // The engine's end: the scheduler keeps the function, and with it the channel,
  // until it has delivered the last event and let go of the request.
  static std::function<bool(CompletionEvent&&)> sink(std::shared_ptr<Channel> ch) {
    return [ch = std::move(ch)](CompletionEvent&& ev) {
      // The last event is always delivered: whoever closed the channel waits
      // for it to know the engine has let go of the slot.
      if (ch->closed.load() && !ev.done) return false;
      {
        std::lock_guard<std::mutex> lk(ch->mu);
        ch->events.push_back(std::move(ev));
      }
      ch->cv.notify_all();
      return !ch->closed.load();
    };
  }
  // Waits up to `timeout` for an event.
  bool next(CompletionEvent& out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, timeout, [&] { return !events.empty(); })) return false;
    out = std::move(events.front());
    events.pop_front();
    return true;
  }
};

// Whether `fd`'s own (peer = false) or peer's (peer = true) address is addr:port,
// with the address spelled as httplib spells it (getnameinfo, numeric).
bool endpoint_is(int fd, bool peer, const std::string& addr, int port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return false;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return false;
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) return false;
  return std::atoi(serv) == port && addr == host;
}

// The socket of the connection `req` came on, or -1. cpp-httplib 0.11 (Debian
// 12's) gives a handler no handle on its connection (later versions have
// Request::is_connection_closed), so look for the open descriptor whose address
// pair is the request's. It is unique, and stays this connection's while the
// handler and its content provider run: httplib closes it only afterwards.
int connection_fd(const httplib::Request& req) {
  if (req.remote_port <= 0) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    if (endpoint_is(static_cast<int>(fd), true, req.remote_addr, req.remote_port) &&
        (req.local_port <= 0 || endpoint_is(static_cast<int>(fd), false, req.local_addr, req.local_port))) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

// True once the client has closed its end (or the connection failed). A
// readable socket with bytes still to read is a pipelined request, not a
// hang-up (the test later httplib versions make for is_connection_closed).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return true;
  if ((p.revents & POLLIN) == 0) return false;
  char c = 0;
  const ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// How often a waiting request looks at its client's socket.
constexpr std::chrono::milliseconds kClientCheckEvery{100};

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  const uint64_t t = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  std::ostringstream os;
  os << prefix << std::hex << (t ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull));
  return os.str();
}

}  // namespace

struct Server::Impl {
  const Model& model;
  Scheduler& sched;
  ServerOptions opt;
  httplib::Server http;
  std::string tmpl;
  std::atomic<bool> draining{false};
  std::atomic<int> in_flight{0};  // generation requests not yet fully answered

  std::mutex metrics_mu;
  std::map<std::pair<std::string, int>, uint64_t> http_counts;  // (route, status) -> count
  uint64_t rejected_busy = 0;
  uint64_t disconnected = 0;  // generation requests whose client left before the answer

  Impl(const Model& m, Scheduler& s, ServerOptions o) : model(m), sched(s), opt(std::move(o)) {
    tmpl = !opt.chat_template.empty() ? opt.chat_template : model.tokenizer().spec().chat_template;
    opt.limits.n_ctx_slot = sched.options().n_ctx_slot;
    routes();
  }

  void count(const std::string& route, int status) {
    std::lock_guard<std::mutex> lk(metrics_mu);
    ++http_counts[{route, status}];
  }

  bool authorized(const httplib::Request& req) const {
    if (opt.api_key.empty()) return true;
    const std::string h = req.get_header_value("Authorization");
    return h == "Bearer " + opt.api_key;
  }

  void routes() {
    http.new_task_queue = [n = opt.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_keep_alive_timeout(2);
    http.set_read_timeout(30);
    http.set_write_timeout(30);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/health" || (req.path == "/" && req.method == "GET") || authorized(req))
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "invalid or missing API key (send 'Authorization: Bearer KEY')", "authentication_error");
      count(req.path, 401);
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) {
        send_error(res, 404, "no route " + req.method + " " + req.path, "not_found_error");
      } else if (res.status == 413) {
        send_error(res, 413, "request body too large", "invalid_request_error");
      } else {
        send_error(res, res.status, "HTTP error " + std::to_string(res.status), "invalid_request_error");
      }
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, 500, what, "server_error");
    });

    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(chat_page_html(), "text/html; charset=utf-8");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (draining.load()) {
        send_json(res, 503, {{"status", "shutting down"}});
      } else {
        send_json(res, 200, {{"status", "ok"}});
      }
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      const auto& c = model.config();
      Json m = {{"id", opt.model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "kestrel"},
                {"meta",
                 {{"n_vocab", c.n_vocab},
                  {"n_ctx_train", c.n_ctx_train},
                  {"n_ctx_slot", sched.options().n_ctx_slot},
                  {"n_slots", sched.options().n_slots},
                  {"size", model.weight_bytes()}}}};
      send_json(res, 200, {{"object", "list"}, {"data", {m}}});
      count("/v1/models", 200);
    });
    // llama-server's /props, plus the engine's switch settings as the scheduler
    // resolved them (what every request runs with).
    http.Get("/props", [this](const httplib::Request&, httplib::Response& res) {
      Json sw = Json::object();
      for (const auto& s : engine_settings(sched.config())) sw[s.name] = s.value;
      send_json(res, 200,
                {{"model_alias", opt.model_name},
                 {"total_slots", sched.options().n_slots},
                 {"n_ctx_slot", sched.options().n_ctx_slot},
                 {"chat_template", tmpl},
                 {"switches", sw}});
      count("/props", 200);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4");
    });
    http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res); });
    http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) { detokenize(req, res); });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, Endpoint::Chat, "/v1/chat/completions");
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, Endpoint::Completion, "/v1/completions");
    });
  }

  static Json parse_object(const std::string& body) {
    Json j;
    try {
      j = Json::parse(body);
    } catch (const Json::parse_error& e) {
      throw ApiError(400, std::string("malformed JSON body: ") + e.what());
    }
    if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
    return j;
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    try {
      const Json j = parse_object(req.body);
      if (!j.contains("content") || !j["content"].is_string())
        throw ApiError(400, "'content' must be a string", "invalid_request_error", "content");
      bool add_special = false, with_pieces = false;
      if (j.contains("add_special")) {
        if (!j["add_special"].is_boolean()) throw ApiError(400, "'add_special' must be a boolean");
        add_special = j["add_special"].get<bool>();
      }
      if (j.contains("with_pieces")) {
        if (!j["with_pieces"].is_boolean()) throw ApiError(400, "'with_pieces' must be a boolean");
        with_pieces = j["with_pieces"].get<bool>();
      }
      const auto ids = model.tokenizer().encode(j["content"].get<std::string>(), add_special, true);
      Json tokens = Json::array();
      for (int32_t id : ids) {
        if (with_pieces) {
          tokens.push_back({{"id", id}, {"piece", model.tokenizer().token_to_piece(id)}});
        } else {
          tokens.push_back(id);
        }
      }
      send_json(res, 200, {{"tokens", tokens}});
      count("/tokenize", 200);
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type, e.param);
      count("/tokenize", e.status);
    }
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    try {
      const Json j = parse_object(req.body);
      if (!j.contains("tokens") || !j["tokens"].is_array())
        throw ApiError(400, "'tokens' must be a list of token ids", "invalid_request_error", "tokens");
      std::vector<int32_t> ids;
      for (const auto& t : j["tokens"]) {
        if (!t.is_number_integer()) throw ApiError(400, "'tokens' must be a list of token ids", "invalid_request_error", "tokens");
        const int64_t id = t.get<int64_t>();
        if (id < 0 || id >= model.config().n_vocab)
          throw ApiError(400, "token id " + std::to_string(id) + " is outside the vocabulary", "invalid_request_error", "tokens");
        ids.push_back(static_cast<int32_t>(id));
      }
      send_json(res, 200, {{"content", model.tokenizer().decode(ids)}});
      count("/detokenize", 200);
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type, e.param);
      count("/detokenize", e.status);
    }
  }

  void complete(const httplib::Request& req, httplib::Response& res, Endpoint ep, const std::string& route) {
    ParsedRequest pr;
    try {
      pr = parse_request(req.body, ep, model, tmpl, opt.limits);
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type, e.param);
      count(route, e.status);
      return;
    }
    if (draining.load()) {
      res.set_header("Retry-After", "5");
      send_error(res, 503, "the server is shutting down", "server_error");
      count(route, 503);
      return;
    }
    auto ch = std::make_shared<Channel>();
    pr.engine.on_event = Channel::sink(ch);
    const SubmitResult sub = sched.submit(std::move(pr.engine));
    if (sub.status != SubmitStatus::Accepted) {
      const int status = sub.status == SubmitStatus::Invalid ? 400 : 503;
      if (status == 503) {
        res.set_header("Retry-After", "1");
        std::lock_guard<std::mutex> lk(metrics_mu);
        ++rejected_busy;
      }
      send_error(res, status, sub.message, status == 400 ? "invalid_request_error" : "server_error");
      count(route, status);
      return;
    }
    const std::string id = random_id(ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-");
    const int fd = connection_fd(req);
    if (pr.stream) {
      stream(res, ch, sub.id, fd, id, pr, route);
    } else {
      whole(res, ch, sub.id, fd, id, pr, route);
    }
  }

  // The client is gone: cancel its request and wait for the engine to let go
  // of the slot (the last event), so that a drain or /metrics sees it free.
  void abandon(Channel& ch, uint64_t sub_id) {
    ch.closed = true;
    sched.cancel(sub_id);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    CompletionEvent ev;
    while (Clock::now() < deadline) {
      if (ch.next(ev, std::chrono::milliseconds(100)) && ev.done) break;
    }
    std::lock_guard<std::mutex> lk(metrics_mu);
    ++disconnected;
  }

  void whole(httplib::Response& res, const std::shared_ptr<Channel>& ch, uint64_t sub_id, int fd,
             const std::string& id, const ParsedRequest& pr, const std::string& route) {
    ++in_flight;
    std::vector<TokenLogprob> lps;
    CompletionEvent ev;
    auto checked = Clock::now();
    for (;;) {
      // Nothing is written until the answer is whole, so a client that hangs
      // up is only seen on its socket: look at it between events.
      if (ch->next(ev, kClientCheckEvery)) {
        for (auto& l : ev.logprobs) lps.push_back(std::move(l));
        if (ev.done) break;
      }
      if (Clock::now() - checked < kClientCheckEvery) continue;
      checked = Clock::now();
      if (client_gone(fd)) {
        abandon(*ch, sub_id);
        // Nobody reads this; it names the outcome in the log and the metrics.
        send_error(res, 499, "the client closed the connection", "invalid_request_error");
        count(route, 499);
        --in_flight;
        return;
      }
    }
    const CompletionResult& r = ev.result;
    if (r.finish_reason == "cancelled") {
      res.set_header("Retry-After", "5");
      send_error(res, 503, "the request was cancelled (server shutting down)", "server_error");
      count(route, 503);
    } else if (r.finish_reason == "error") {
      send_error(res, 500, r.error, "server_error");
      count(route, 500);
    } else {
      const Tokenizer& tok = model.tokenizer();
      const auto* lp = pr.want_logprobs ? &lps : nullptr;
      send_json(res, 200,
                pr.endpoint == Endpoint::Chat ? chat_response(id, opt.model_name, r, lp, tok)
                                              : completion_response(id, opt.model_name, r, lp, tok));
      count(route, 200);
    }
    --in_flight;
  }

  struct StreamState {
    std::shared_ptr<Channel> ch;
    uint64_t sub_id = 0;
    int fd = -1;  // the connection's socket (-1: not found; then writes tell)
    std::string id;
    ParsedRequest pr;
    bool started = false;
    bool finished = false;
  };

  void stream(httplib::Response& res, const std::shared_ptr<Channel>& ch, uint64_t sub_id, int fd,
              const std::string& id, ParsedRequest& pr, const std::string& route) {
    ++in_flight;
    auto st = std::make_shared<StreamState>();
    st->ch = ch;
    st->sub_id = sub_id;
    st->fd = fd;
    st->id = id;
    st->pr = std::move(pr);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    count(route, 200);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st](size_t, httplib::DataSink& sink) { return stream_step(*st, sink); },
        [this, st](bool) {
          // Called once the response is over, whether or not the client stayed.
          if (!st->finished) abandon(*st->ch, st->sub_id);
          --in_flight;
        });
  }

  bool write_event(httplib::DataSink& sink, const Json& j) {
    const std::string s = "data: " + dump(j) + "\n\n";
    return sink.write(s.data(), s.size());
  }

  // One call writes at least one event; false ends the response (client gone).
  bool stream_step(StreamState& st, httplib::DataSink& sink) {
    const Tokenizer& tok = model.tokenizer();
    const bool chat = st.pr.endpoint == Endpoint::Chat;
    if (!st.started) {
      st.started = true;
      if (chat && !write_event(sink, chat_chunk(st.id, opt.model_name, "", true, "", nullptr, tok))) return false;
    }
    // A request still queued or in prefill writes nothing for a while: look at
    // the socket too, not only at failed writes.
    CompletionEvent ev;
    while (!st.ch->next(ev, kClientCheckEvery)) {
      if (!sink.is_writable() || client_gone(st.fd)) return false;
    }
    const auto* lp = st.pr.want_logprobs ? &ev.logprobs : nullptr;
    if (!ev.text.empty() || (lp && !lp->empty())) {
      const Json j = chat ? chat_chunk(st.id, opt.model_name, ev.text, false, "", lp, tok)
                          : completion_chunk(st.id, opt.model_name, ev.text, "", lp, tok);
      if (!write_event(sink, j)) return false;
    }
    if (!ev.done) return true;
    st.finished = true;
    const CompletionResult& r = ev.result;
    if (r.finish_reason == "cancelled" || r.finish_reason == "error") {
      const std::string msg = r.finish_reason == "error" ? r.error : "the request was cancelled (server shutting down)";
      write_event(sink, error_body(msg, "server_error"));
    } else {
      const std::string fr = openai_finish_reason(r.finish_reason);
      Json last = chat ? chat_chunk(st.id, opt.model_name, "", false, fr, nullptr, tok)
                       : completion_chunk(st.id, opt.model_name, "", fr, nullptr, tok);
      if (st.pr.include_usage) last["usage"] = usage_json(r);
      write_event(sink, last);
      if (st.pr.include_usage) {
        Json u = last;
        u["choices"] = Json::array();
        write_event(sink, u);
      }
    }
    const std::string done = "data: [DONE]\n\n";
    sink.write(done.data(), done.size());
    sink.done();
    return true;
  }

  std::string metrics_text() {
    const SchedulerStats s = sched.stats();
    std::ostringstream os;
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
      os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value
         << "\n";
    };
    {
      std::lock_guard<std::mutex> lk(metrics_mu);
      os << "# HELP kestrel_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE kestrel_requests_total counter\n";
      for (const auto& [k, n] : http_counts)
        os << "kestrel_requests_total{route=\"" << k.first << "\",status=\"" << k.second << "\"} " << n << "\n";
      metric("kestrel_requests_rejected_total", "counter", "Generation requests refused with 503 (queue full).",
             rejected_busy);
      metric("kestrel_requests_disconnected_total", "counter",
             "Generation requests cancelled because the client went away before the answer.", disconnected);
    }
    metric("kestrel_requests_finished_total", "counter", "Generation requests the engine finished.",
           s.requests_finished);
    metric("kestrel_tokens_generated_total", "counter", "Tokens sampled.", s.tokens_generated);
    metric("kestrel_prompt_tokens_total", "counter", "Prompt tokens evaluated.", s.prompt_tokens);
    metric("kestrel_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache.",
           s.prompt_tokens_cached);
    metric("kestrel_engine_steps_total", "counter", "Forward passes (batches) run.", s.steps);
    metric("kestrel_queue_depth", "gauge", "Requests waiting for a slot.", s.queue_depth);
    metric("kestrel_kv_slots_in_use", "gauge", "KV cache slots holding a running request.", s.slots_in_use);
    metric("kestrel_kv_slots_total", "gauge", "KV cache slots.", s.n_slots);
    metric("kestrel_kv_blocks_in_use", "gauge", "KV cache blocks held by running requests.", s.kv_blocks_in_use);
    metric("kestrel_kv_blocks_cached", "gauge", "KV cache blocks kept for prefix reuse.", s.kv_blocks_cached);
    metric("kestrel_kv_blocks_total", "gauge", "KV cache blocks in the shared pool.", s.kv_blocks_total);
    metric("kestrel_kv_block_size", "gauge", "Positions per KV cache block.", s.kv_block_size);
    // KV-Compress counts single (layer, kv head) blocks: a partial eviction
    // frees part of a block above, so the gauges above round up.
    metric("kestrel_kv_head_blocks_per_block", "gauge",
           "KV cache blocks of one (layer, kv head) in one block above (KV-Compress evicts these).",
           s.kv_head_blocks_per_block);
    metric("kestrel_spec_drafted_tokens_total", "counter", "Speculative decoding: tokens drafted.", s.spec_drafted);
    metric("kestrel_spec_accepted_tokens_total", "counter", "Speculative decoding: drafted tokens accepted.",
           s.spec_accepted);
    metric("kestrel_kvcompress_runs_total", "counter", "KV-Compress evictions that removed blocks from a slot.",
           s.kvcompress_runs);
    metric("kestrel_kvcompress_head_blocks_evicted_total", "counter",
           "(layer, kv head) KV blocks KV-Compress took out of slots' block tables.", s.kvcompress_head_blocks_evicted);
    metric("kestrel_kvcompress_head_blocks_freed_total", "counter",
           "(layer, kv head) KV blocks KV-Compress returned to the shared pool (evicted and held by no other slot).",
           s.kvcompress_head_blocks_freed);
    metric("kestrel_guard_checks", "gauge",
           "Accuracy guard: decode steps recomputed on the exact path since the configuration last changed.",
           s.guard.checks);
    metric("kestrel_guard_kld", "gauge",
           "Accuracy guard: mean KL divergence of those steps from the exact path (nats).", s.guard.kld);
    metric("kestrel_guard_top1_agreement", "gauge",
           "Accuracy guard: share of those steps whose most likely token matches the exact path's.", s.guard.top1);
    metric("kestrel_guard_timed_checks", "gauge",
           "Accuracy guard: checked steps that were a request's decode alone, timed on both paths.", s.guard.timed);
    metric("kestrel_guard_speedup", "gauge",
           "Accuracy guard: the exact path's decode time over the running configuration's on the timed checks "
           "(0: none yet).",
           s.guard.speedup);
    metric("kestrel_guard_memory_ratio", "gauge",
           "Accuracy guard: weights + KV pool of the running configuration over the exact path's.",
           s.guard_memory_ratio);
    metric("kestrel_guard_switches_turned_off_total", "counter",
           "Accuracy guard: times the running check turned a lossy switch off for new requests.",
           s.guard_reconfigurations);
    os << "# HELP kestrel_time_to_first_token_seconds Submit to first sampled token.\n"
          "# TYPE kestrel_time_to_first_token_seconds summary\n"
       << "kestrel_time_to_first_token_seconds_sum " << s.ttft_seconds_sum << "\n"
       << "kestrel_time_to_first_token_seconds_count " << s.ttft_count << "\n";
    metric("kestrel_tokens_per_second", "gauge", "Tokens sampled per second over the last 10 s.",
           s.decode_tokens_per_second);
    metric("kestrel_http_in_flight", "gauge", "Generation requests being answered.", in_flight.load());
    os << "# HELP kestrel_switch The engine's switch settings (1 for the value in force).\n"
          "# TYPE kestrel_switch gauge\n";
    const auto settings = engine_settings(sched.config());
    for (const auto& sw : settings) os << "kestrel_switch{name=\"" << sw.name << "\",value=\"" << sw.value << "\"} 1\n";
    guarded_switch_metrics(os, settings);
    return os.str();
  }

  // Each lossy switch's start-up figures alone, and whether it still runs
  // (the running check may have turned it off since).
  void guarded_switch_metrics(std::ostringstream& os, const std::vector<SwitchSetting>& settings) const {
    if (opt.guarded.empty()) return;
    auto family = [&](const char* name, const char* help, auto value) {
      os << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
      for (const GuardedSwitch& g : opt.guarded)
        os << name << "{name=\"" << g.name << "\",value=\"" << g.value << "\"} " << value(g) << "\n";
    };
    family("kestrel_guard_switch_kld",
           "Accuracy guard at start-up: the switch alone, KL divergence from the exact path.",
           [](const GuardedSwitch& g) { return g.kld; });
    family("kestrel_guard_switch_top1_agreement",
           "Accuracy guard at start-up: the switch alone, share of positions whose most likely token is the exact "
           "path's.",
           [](const GuardedSwitch& g) { return g.top1; });
    family("kestrel_guard_switch_memory_ratio",
           "Weights + KV pool with the switch alone over the exact path's (from the layouts).",
           [](const GuardedSwitch& g) { return g.memory_ratio; });
    family("kestrel_guard_switch_on", "1 while the switch runs (turned off at start-up or by the running check: 0).",
           [&](const GuardedSwitch& g) {
             const bool on = std::any_of(settings.begin(), settings.end(), [&](const SwitchSetting& s) {
               return s.name == g.name && s.value == g.value;
             });
             return on ? 1 : 0;
           });
  }
};

Server::Server(const Model& model, Scheduler& scheduler, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, scheduler, std::move(options))) {}

Server::~Server() = default;

int Server::bind() {
  auto& o = impl_->opt;
  if (o.port == 0) {
    const int p = impl_->http.bind_to_any_port(o.host);
    if (p <= 0) fail("server: cannot bind ", o.host, " on any port");
    o.port = p;
  } else if (!impl_->http.bind_to_port(o.host, o.port)) {
    fail("server: cannot bind ", o.host, ":", o.port, " (in use, or not an address of this machine)");
  }
  return o.port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::shutdown(double drain_seconds) {
  impl_->draining = true;
  impl_->sched.begin_drain();
  const auto deadline = Clock::now() + std::chrono::duration<double>(drain_seconds);
  while (Clock::now() < deadline && (impl_->in_flight.load() > 0 || !impl_->sched.idle()))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  impl_->http.stop();
}

}  // namespace kestrel::server
