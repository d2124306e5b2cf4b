// kestrel serve: an OpenAI-compatible HTTP server over the continuous-batching
// scheduler. Like llama-server, --ctx-size is the whole cache: each of the
// --parallel slots gets ctx-size / parallel positions (or --ctx-per-slot, the
// slots then sharing the pool of ctx-size positions as admission allows).
// SIGTERM / SIGINT: stop taking requests, answer the running ones, exit 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/accuracy_guard.h"
#include "runtime/memory_footprint.h"
#include "runtime/scheduler.h"
#include "server/server.h"

namespace kestrel::cli {
namespace {

// /metrics' per-switch lines: each lossy switch the guard measured alone at
// start-up, with the memory it saves at the pool's size.
std::vector<server::GuardedSwitch> guarded_switch_figures(const Model& model, const ModelFlags& flags,
                                                          const GuardOutcome& guard,
                                                          const std::vector<SwitchSetting>& lossless,
                                                          int64_t positions) {
  std::vector<server::GuardedSwitch> out;
  const double exact = memory_at_context(model, engine_config_with(flags, lossless), positions);
  for (const GuardStep& step : guard.steps) {
    if (step.settings.size() != 1 || !step.figures) continue;
    std::vector<SwitchSetting> with = lossless;
    with.push_back(step.settings[0]);
    server::GuardedSwitch g;
    g.name = step.settings[0].name;
    g.value = step.settings[0].value;
    g.kld = step.figures->kld;
    g.top1 = step.figures->top1;
    g.memory_ratio = memory_at_context(model, engine_config_with(flags, with), positions) / exact;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    std::string host = "127.0.0.1";
    int port = 8080;
    int parallel = 4;
    int64_t ctx_per_slot = 0;
    int queue = 64;
    std::string api_key;
    std::string alias;
    std::string chat_template;
    size_t max_body = 1 << 20;
    int max_tokens = 4096;
    int default_max_tokens = 256;
    int http_threads = 64;
    double drain_seconds = 60.0;
    int check_every = 64;
    int check_min = 16;
    int check_follow = 4;
  };
  auto o = std::make_shared<Opts>();
  o->model.batch = 128;  // here: prompt tokens per engine step, shared by the slots in prefill
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  add_model_flags(*cmd, o->model);
  add_guard_flags(*cmd, o->model.guard);
  add_speculative_flags(*cmd, o->model);
  cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "port to listen on (0 = any free port)")->capture_default_str();
  cmd->add_option("--parallel,--np", o->parallel, "slots: requests decoded together")->capture_default_str();
  cmd->add_option("--ctx-per-slot", o->ctx_per_slot,
                  "positions one slot may hold (default: ctx-size / parallel); more lets slots share the pool, "
                  "which --kv-budget keeps small per slot")
      ->capture_default_str();
  cmd->add_option("--queue-size", o->queue, "requests waiting for a slot before 503")->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' (all routes but / and /health)");
  cmd->add_option("-a,--alias", o->alias, "model name in responses (default: the file name)");
  cmd->add_option("--chat-template", o->chat_template, "built-in chat template to use instead of the model's");
  cmd->add_option("--max-body", o->max_body, "largest request body in bytes")->capture_default_str();
  cmd->add_option("--max-tokens-limit", o->max_tokens, "largest max_tokens a request may ask for")
      ->capture_default_str();
  cmd->add_option("-n,--n-predict", o->default_max_tokens, "max_tokens when a request gives none")
      ->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "HTTP connections served at once")->capture_default_str();
  cmd->add_option("--drain-timeout", o->drain_seconds, "seconds to finish running requests on SIGTERM")
      ->capture_default_str();
  cmd->add_option("--guard-check-every", o->check_every,
                  "with an accuracy budget: recompute one decode step in N on the exact path, and turn off a lossy "
                  "switch for new requests when the running figures leave the budget (0 = no running check)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--guard-follow-every", o->check_follow,
                  "running check: follow one request in K on the exact path (its cost is a prompt-speed pass over "
                  "the followed requests' tokens)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--guard-min-checks", o->check_min, "running check: checks before its figures are judged")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([o] {
    if (o->parallel < 1) fail("serve: --parallel must be at least 1, got ", o->parallel);
    if (o->http_threads < 1) fail("serve: --http-threads must be at least 1, got ", o->http_threads);
    if (o->default_max_tokens < 1) fail("serve: --n-predict must be at least 1");
    // Block the stop signals in every thread (threads inherit the mask); one
    // thread takes them with sigwait. A client gone mid-write must not kill us.
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    // A shell starts background jobs with SIGINT ignored, and an ignored signal
    // is discarded before sigwait can see it: take the default back first
    // (blocked, so the default action never runs).
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
    signal(SIGPIPE, SIG_IGN);

    auto model = load_model_verbose(o->model);
    GuardOutcome guard;
    apply_guard(*model, o->model, &guard);
    const int64_t total_ctx =
        o->model.ctx > 0 ? o->model.ctx : (model->config().n_ctx_train > 0 ? model->config().n_ctx_train : 4096);
    SchedulerOptions sched_opt;
    sched_opt.n_slots = o->parallel;
    sched_opt.n_ctx_slot = o->ctx_per_slot > 0 ? o->ctx_per_slot : total_ctx / o->parallel;
    if (sched_opt.n_ctx_slot < 8) fail("serve: --ctx-size ", total_ctx, " leaves under 8 positions per slot");
    // With --ctx-per-slot the pool still holds --ctx-size positions.
    if (o->ctx_per_slot > 0) sched_opt.n_ctx_total = total_ctx;
    sched_opt.prefill_chunk = o->model.batch;
    sched_opt.max_queue = o->queue;
    sched_opt.engine = engine_config(o->model);
    std::vector<SwitchSetting> lossless;
    bool lossy_running = false;
    for (const auto& s : o->model.switches) {
      if (is_lossy(s))
        lossy_running = true;
      else
        lossless.push_back(s);
    }
    if (o->model.guard.budget.any() && o->check_every > 0 && lossy_running) {
      sched_opt.check.every = o->check_every;
      sched_opt.check.min_checks = o->check_min;
      sched_opt.check.follow_every = o->check_follow;
      sched_opt.check.budget = o->model.guard.budget;
      sched_opt.check.exact = engine_config_with(o->model, lossless);
      // Runs on the engine thread: picks the switch to give up and builds the configuration without it.
      auto running = std::make_shared<ModelFlags>(o->model);
      sched_opt.on_over_budget = [running, guard](const std::string& why) -> std::optional<EngineConfig> {
        const std::optional<SwitchSetting> off = next_to_turn_off(guard, running->switches, running->guard.budget);
        if (!off) {
          std::cerr << "accuracy guard: running check over budget (" << why
                    << "), and no switch is left that serve can turn off\n";
          return std::nullopt;
        }
        std::erase(running->switches, *off);
        std::cerr << "accuracy guard: running check over budget (" << why << "): turning off " << off->label()
                  << " for new requests\n";
        return engine_config(*running);
      };
      std::cerr << "accuracy guard: running check of 1 decode step in " << o->check_every << " of 1 request in "
                << o->check_follow << " on the exact path\n";
    }
    Scheduler scheduler(*model, sched_opt);

    server::ServerOptions srv_opt;
    srv_opt.host = o->host;
    srv_opt.port = o->port;
    srv_opt.api_key = o->api_key;
    srv_opt.max_body_bytes = o->max_body;
    srv_opt.http_threads = o->http_threads;
    const std::string path = o->model.model.empty() ? default_model_path() : o->model.model;
    srv_opt.model_name = !o->alias.empty() ? o->alias : std::filesystem::path(path).filename().string();
    srv_opt.chat_template = o->chat_template;
    srv_opt.limits.max_tokens_limit = o->max_tokens;
    srv_opt.limits.default_max_tokens = o->default_max_tokens;
    const SchedulerStats pool = scheduler.stats();  // the positions the pool holds, as its memory ratio counts them
    srv_opt.guarded = guarded_switch_figures(*model, o->model, guard, lossless,
                                             static_cast<int64_t>(pool.kv_blocks_total) * pool.kv_block_size);
    server::Server srv(*model, scheduler, srv_opt);
    const int port = srv.bind();
    std::cerr << "kestrel: serving " << srv_opt.model_name << " on http://" << o->host << ":" << port << " ("
              << o->parallel << " slots of " << sched_opt.n_ctx_slot << " tokens; "
              << engine_settings_text(scheduler.config()) << ")" << std::endl;

    std::atomic<bool> signalled{false};
    std::thread signals([&] {
      int sig = 0;
      sigwait(&stop_set, &sig);
      signalled = true;
      std::cerr << "kestrel: signal " << sig << ", finishing running requests" << std::endl;
      srv.shutdown(o->drain_seconds);
    });
    srv.run();
    // run() also returns if the listener fails; wake the signal thread then.
    // The signal stays pending (blocked everywhere) if nobody waits any more.
    if (!signalled.load()) kill(getpid(), SIGTERM);
    signals.join();
    scheduler.stop();
    std::cerr << "kestrel: stopped" << std::endl;
  });
}

}  // namespace kestrel::cli
