#include <functional>
#include <map>

#include "core/error.h"
#include "gguf/gguf.h"
#include "model/gemma3.h"
#include "model/llama.h"
#include "model/model.h"

namespace kestrel {
namespace {

using Builder = std::function<std::unique_ptr<Model>(std::shared_ptr<const gguf::File>, const std::string&,
                                                     const LoadOptions&)>;

const std::map<std::string, Builder>& registry() {
  static const std::map<std::string, Builder> r = {
      {"gemma3", [](auto f, const auto& a, const auto& o) { return std::make_unique<Gemma3Model>(f, a, o); }},
      {"llama", [](auto f, const auto& a, const auto& o) { return std::make_unique<LlamaModel>(f, a, o); }},
      {"qwen2", [](auto f, const auto& a, const auto& o) { return std::make_unique<LlamaModel>(f, a, o); }},
  };
  return r;
}

}  // namespace

void Model::run_block(Block, int, const Batch&, const float*, KvCache&, float*, ForwardContext&) const {
  fail(config_.arch, ": running single blocks (TEAL calibration) is not supported for this architecture");
}

void Model::finish_loading(VocabSpec spec) {
  for (const auto& t : file_->tensors()) weight_bytes_ += t.nbytes;
  tokenizer_ = std::make_unique<Tokenizer>(std::move(spec));
  if (tokenizer_->n_vocab() != config_.n_vocab)
    fail("model: tokenizer has ", tokenizer_->n_vocab(), " tokens but token_embd.weight has ", config_.n_vocab,
         " rows");
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& [name, _] : registry()) out.push_back(name);
  return out;
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<const gguf::File>(gguf::File::open(path));
  const std::string arch = file->get_string("general.architecture").value_or("");
  if (arch.empty()) fail("model: ", path, " has no general.architecture");
  // An EAGLE-3 head is not a model on its own: it drafts for one (model/eagle3_head.h).
  if (arch == "eagle3")
    fail("model: ", path,
         " is an EAGLE-3 head, not a model: give it to a target with -md and "
         "--spec-type draft-eagle3");
  auto it = registry().find(arch);
  if (it == registry().end()) {
    std::string names;
    for (const auto& n : supported_architectures()) names += (names.empty() ? "" : ", ") + n;
    fail("model: architecture '", arch, "' is not supported (supported: ", names, ")");
  }
  std::unique_ptr<Model> model = it->second(file, arch, options);
  model->path_ = path;
  return model;
}

}  // namespace kestrel
