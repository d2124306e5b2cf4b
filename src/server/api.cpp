#include "server/api.h"

#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace kestrel::server {
namespace {

const Json* field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> get_number(const Json& j, const char* key, double lo, double hi) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw ApiError(400, std::string("'") + key + "' must be a number", "invalid_request_error", key);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    std::ostringstream os;
    os << "'" << key << "' must be between " << lo << " and " << hi << ", got " << x;
    throw ApiError(400, os.str(), "invalid_request_error", key);
  }
  return x;
}

std::optional<int64_t> get_int(const Json& j, const char* key, int64_t lo, int64_t hi) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  const bool integral = v->is_number_integer() || (v->is_number_float() && std::isfinite(v->get<double>()) &&
                                                    v->get<double>() == std::floor(v->get<double>()));
  if (!integral) throw ApiError(400, std::string("'") + key + "' must be an integer", "invalid_request_error", key);
  const double d = v->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    std::ostringstream os;
    os << "'" << key << "' must be between " << lo << " and " << hi << ", got " << v->dump();
    throw ApiError(400, os.str(), "invalid_request_error", key);
  }
  return v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>()) : v->get<int64_t>();
}

std::optional<bool> get_bool(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw ApiError(400, std::string("'") + key + "' must be a boolean", "invalid_request_error", key);
  return v->get<bool>();
}

std::vector<std::string> get_stop(const Json& j) {
  const Json* v = field(j, "stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) throw ApiError(400, "'stop' must be a string or a list of strings", "invalid_request_error", "stop");
  if (v->size() > 16) throw ApiError(400, "'stop' may hold at most 16 strings", "invalid_request_error", "stop");
  std::vector<std::string> out;
  for (const auto& s : *v) {
    if (!s.is_string()) throw ApiError(400, "'stop' must be a string or a list of strings", "invalid_request_error", "stop");
    if (!s.get<std::string>().empty()) out.push_back(s.get<std::string>());
  }
  return out;
}

// A message's content: a string, or a list of {"type": "text", "text": ...} parts.
std::string message_content(const Json& m) {
  const Json* c = field(m, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (c->is_array()) {
    std::string out;
    for (const auto& part : *c) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
          !part["text"].is_string())
        throw ApiError(400, "message content parts must be {\"type\": \"text\", \"text\": string}",
                       "invalid_request_error", "messages");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  throw ApiError(400, "message 'content' must be a string or a list of text parts", "invalid_request_error",
                 "messages");
}

std::vector<int32_t> chat_prompt(const Json& body, const Model& model, const std::string& tmpl) {
  const Json* msgs = field(body, "messages");
  if (!msgs) throw ApiError(400, "'messages' is required", "invalid_request_error", "messages");
  if (!msgs->is_array() || msgs->empty())
    throw ApiError(400, "'messages' must be a non-empty list", "invalid_request_error", "messages");
  std::vector<ChatMessage> chat;
  for (const auto& m : *msgs) {
    if (!m.is_object()) throw ApiError(400, "each message must be an object", "invalid_request_error", "messages");
    const Json* role = field(m, "role");
    if (!role || !role->is_string())
      throw ApiError(400, "each message needs a string 'role'", "invalid_request_error", "messages");
    chat.push_back({role->get<std::string>(), message_content(m)});
  }
  std::string text;
  try {
    text = apply_chat_template(tmpl, chat, true);
  } catch (const Error& e) {
    throw ApiError(500, std::string("chat template: ") + e.what(), "server_error");
  }
  return model.tokenizer().encode(text, true, true);
}

std::vector<int32_t> completion_prompt(const Json& body, const Model& model) {
  const Json* p = field(body, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "invalid_request_error", "prompt");
  if (p->is_string()) return model.tokenizer().encode(p->get<std::string>(), true, true);
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string())
    return model.tokenizer().encode((*p)[0].get<std::string>(), true, true);
  if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    std::vector<int32_t> ids;
    for (const auto& t : *p) {
      if (!t.is_number_integer()) throw ApiError(400, "'prompt' token list must hold integers", "invalid_request_error", "prompt");
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= model.config().n_vocab)
        throw ApiError(400, "'prompt' token id " + std::to_string(id) + " is outside the vocabulary",
                       "invalid_request_error", "prompt");
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  }
  throw ApiError(400, "'prompt' must be a string (or one string in a list, or a list of token ids)",
                 "invalid_request_error", "prompt");
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<int> utf8_bytes(const std::string& s) {
  std::vector<int> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

Json chat_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok) {
  Json content = Json::array();
  for (const auto& lp : lps) {
    const std::string piece = tok.token_to_piece(lp.token, false);
    Json top = Json::array();
    for (const auto& [id, v] : lp.top) {
      const std::string p = tok.token_to_piece(id, false);
      top.push_back({{"token", p}, {"logprob", v}, {"bytes", utf8_bytes(p)}});
    }
    content.push_back({{"token", piece}, {"logprob", lp.logprob}, {"bytes", utf8_bytes(piece)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

Json completion_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok, size_t offset0) {
  Json tokens = Json::array(), token_lps = Json::array(), tops = Json::array(), offsets = Json::array();
  size_t offset = offset0;
  for (const auto& lp : lps) {
    const std::string piece = tok.token_to_piece(lp.token, false);
    tokens.push_back(piece);
    token_lps.push_back(lp.logprob);
    Json top = Json::object();
    for (const auto& [id, v] : lp.top) top[tok.token_to_piece(id, false)] = v;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += piece.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

}  // namespace

Json error_body(const std::string& message, const std::string& type, const std::string& param) {
  Json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  return {{"error", e}};
}

std::string openai_finish_reason(const std::string& reason) { return reason == "length" ? "length" : "stop"; }

ParsedRequest parse_request(const std::string& text, Endpoint endpoint, const Model& model,
                            const std::string& chat_template, const ApiLimits& limits) {
  Json body;
  try {
    body = Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw ApiError(400, std::string("malformed JSON body: ") + e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  if (const Json* m = field(body, "model"); m && !m->is_string())
    throw ApiError(400, "'model' must be a string", "invalid_request_error", "model");
  if (auto n = get_int(body, "n", 1, 1); n && *n != 1)
    throw ApiError(400, "only n = 1 is supported", "invalid_request_error", "n");

  ParsedRequest r;
  r.endpoint = endpoint;
  r.stream = get_bool(body, "stream").value_or(false);
  if (const Json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw ApiError(400, "'stream_options' must be an object", "invalid_request_error", "stream_options");
    r.include_usage = get_bool(*so, "include_usage").value_or(false);
  }

  SamplingParams& s = r.engine.gen.sampling;
  if (auto v = get_number(body, "temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = get_number(body, "top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*v);
  if (auto v = get_number(body, "min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = get_int(body, "top_k", 0, 1 << 30)) s.top_k = static_cast<int>(*v);
  if (auto v = get_number(body, "presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = get_number(body, "frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*v);
  if (auto v = get_number(body, "repeat_penalty", 0.0, 10.0)) s.repeat_penalty = static_cast<float>(*v);
  if (auto v = get_int(body, "seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v) & 0xFFFFFFFFu;
  r.engine.gen.stop = get_stop(body);
  r.engine.reuse_prefix = get_bool(body, "cache_prompt").value_or(true);  // llama-server's name
  r.engine.gen.stop_at_eog = !get_bool(body, "ignore_eos").value_or(false);  // llama-server's name

  if (endpoint == Endpoint::Chat) {
    r.want_logprobs = get_bool(body, "logprobs").value_or(false);
    if (auto v = get_int(body, "top_logprobs", 0, 20)) {
      if (!r.want_logprobs) throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "invalid_request_error", "top_logprobs");
      r.top_logprobs = static_cast<int>(*v);
    }
  } else if (const Json* lp = field(body, "logprobs")) {
    if (lp->is_boolean()) {
      r.want_logprobs = lp->get<bool>();
    } else {
      auto v = get_int(body, "logprobs", 0, 20);
      r.want_logprobs = true;
      r.top_logprobs = static_cast<int>(*v);
    }
  }
  r.engine.n_logprobs = r.want_logprobs ? r.top_logprobs : -1;

  std::optional<int64_t> max_tokens = get_int(body, "max_tokens", 1, limits.max_tokens_limit);
  if (!max_tokens) max_tokens = get_int(body, "max_completion_tokens", 1, limits.max_tokens_limit);
  r.engine.prompt = endpoint == Endpoint::Chat ? chat_prompt(body, model, chat_template) : completion_prompt(body, model);
  const int64_t n_prompt = static_cast<int64_t>(r.engine.prompt.size());
  if (n_prompt == 0) throw ApiError(400, "the prompt is empty", "invalid_request_error", "prompt");
  if (max_tokens) {
    r.engine.gen.max_tokens = static_cast<int>(*max_tokens);
  } else {
    const int64_t room = limits.n_ctx_slot - n_prompt;
    if (room < 1) {
      throw ApiError(400, "context overflow: the prompt has " + std::to_string(n_prompt) +
                              " tokens, but the context of a slot holds " + std::to_string(limits.n_ctx_slot) +
                              " (prompt + at least 1 generated token)",
                     "invalid_request_error", "messages");
    }
    r.engine.gen.max_tokens = static_cast<int>(std::min<int64_t>(limits.default_max_tokens, room));
  }
  if (n_prompt + r.engine.gen.max_tokens > limits.n_ctx_slot) {
    throw ApiError(400, "context overflow: the prompt has " + std::to_string(n_prompt) + " tokens and max_tokens is " +
                            std::to_string(r.engine.gen.max_tokens) + ", " +
                            std::to_string(n_prompt + r.engine.gen.max_tokens) +
                            " tokens requested, but the context of a slot holds " + std::to_string(limits.n_ctx_slot),
                   "invalid_request_error", "max_tokens");
  }
  return r;
}

Json usage_json(const CompletionResult& r) {
  const int64_t completion = static_cast<int64_t>(r.tokens.size());
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", r.prompt_tokens + completion},
          {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
}

namespace {

// What every completion object and chunk carries around its one choice.
Json envelope(const std::string& id, const char* object, const std::string& model_name, Json choice) {
  return {{"id", id},
          {"object", object},
          {"created", now_unix()},
          {"model", model_name},
          {"system_fingerprint", "kestrel"},
          {"choices", Json::array({std::move(choice)})}};
}

}  // namespace

Json chat_response(const std::string& id, const std::string& model_name, const CompletionResult& r,
                   const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok) {
  Json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", r.text}}},
                 {"logprobs", logprobs ? chat_logprobs(*logprobs, tok) : Json(nullptr)},
                 {"finish_reason", openai_finish_reason(r.finish_reason)}};
  Json out = envelope(id, "chat.completion", model_name, std::move(choice));
  out["usage"] = usage_json(r);
  return out;
}

Json completion_response(const std::string& id, const std::string& model_name, const CompletionResult& r,
                         const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok) {
  Json choice = {{"index", 0},
                 {"text", r.text},
                 {"logprobs", logprobs ? completion_logprobs(*logprobs, tok, 0) : Json(nullptr)},
                 {"finish_reason", openai_finish_reason(r.finish_reason)}};
  Json out = envelope(id, "text_completion", model_name, std::move(choice));
  out["usage"] = usage_json(r);
  return out;
}

Json chat_chunk(const std::string& id, const std::string& model_name, const std::string& text, bool role,
                const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs, const Tokenizer& tok) {
  Json delta = Json::object();
  if (role) delta["role"] = "assistant";
  if (role || !text.empty()) delta["content"] = text;
  Json choice = {{"index", 0},
                 {"delta", delta},
                 {"logprobs", logprobs && !logprobs->empty() ? chat_logprobs(*logprobs, tok) : Json(nullptr)},
                 {"finish_reason", finish_reason.empty() ? Json(nullptr) : Json(finish_reason)}};
  return envelope(id, "chat.completion.chunk", model_name, std::move(choice));
}

Json completion_chunk(const std::string& id, const std::string& model_name, const std::string& text,
                      const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs,
                      const Tokenizer& tok) {
  Json choice = {{"index", 0},
                 {"text", text},
                 {"logprobs", logprobs && !logprobs->empty() ? completion_logprobs(*logprobs, tok, 0) : Json(nullptr)},
                 {"finish_reason", finish_reason.empty() ? Json(nullptr) : Json(finish_reason)}};
  return envelope(id, "text_completion", model_name, std::move(choice));
}

}  // namespace kestrel::server
