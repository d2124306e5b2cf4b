#pragma once
// The OpenAI-style request bodies turned into engine requests, and the engine's
// results turned into response bodies. No HTTP here: the server (server.h)
// moves bytes; this file decides what they mean. Bad bodies throw ApiError,
// which the server maps to 400 {"error": {...}}.
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/scheduler.h"

namespace kestrel::server {

using Json = nlohmann::json;

struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string type = "invalid_request_error",
           std::string param = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)) {}
  int status;
  std::string type;
  std::string param;
};

Json error_body(const std::string& message, const std::string& type, const std::string& param = "");

struct ApiLimits {
  int64_t n_ctx_slot = 2048;
  int max_tokens_limit = 4096;  // largest max_tokens a request may ask for
  int default_max_tokens = 256;  // when the request gives none (capped by the context)
};

enum class Endpoint { Chat, Completion };

// A parsed request: what the scheduler needs plus how to answer.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::Chat;
  CompletionRequest engine;  // prompt, options, n_logprobs (on_event left empty)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool want_logprobs = false;
  int top_logprobs = 0;
};

// Throws ApiError (400) naming the bad field.
ParsedRequest parse_request(const std::string& body, Endpoint endpoint, const Model& model,
                            const std::string& chat_template, const ApiLimits& limits);

// Non-streaming response bodies.
Json chat_response(const std::string& id, const std::string& model_name, const CompletionResult& r,
                   const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok);
Json completion_response(const std::string& id, const std::string& model_name, const CompletionResult& r,
                         const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok);

// Streaming chunks. `role` opens a chat stream; finish_reason "" = not the last.
Json chat_chunk(const std::string& id, const std::string& model_name, const std::string& text, bool role,
                const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok);
Json completion_chunk(const std::string& id, const std::string& model_name, const std::string& text,
                      const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs,
                      const Tokenizer& tok);
Json usage_json(const CompletionResult& r);

// OpenAI's finish reasons: "stop" or "length".
std::string openai_finish_reason(const std::string& reason);

}  // namespace kestrel::server
