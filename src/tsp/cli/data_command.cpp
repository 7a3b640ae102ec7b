// `tsp data prepare`: flags to PrepareOptions, the progress stream, the summary line.
#include "tsp/cli/data_command.h"

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "tsp/cli/int_range.h"
#include "tsp/core/check.h"
#include "tsp/data/prepare/prepare.h"

namespace tsp::cli {

namespace {

data::InputOptions input_options(const std::string& format, const std::string& field, const std::string& doc_sep) {
  data::InputOptions o;
  o.format = format == "text" ? data::InputFormat::text
             : format == "jsonl" ? data::InputFormat::jsonl
                                 : data::InputFormat::automatic;
  o.field = field;
  o.unit = data::parse_document_unit(doc_sep);
  return o;
}

}  // namespace

CLI::App* add_data_command(CLI::App& app, DataArgs& a) {
  CLI::App* cmd = app.add_subcommand("data", "prepare training data: text or JSONL to token shards");
  cmd->require_subcommand(1);
  CLI::App* p = cmd->add_subcommand(
      "prepare",
      "encode text files, directories (recursive, sorted by path), JSONL files or stdin ('-') into "
      "sharded token files with EOS after every document and a manifest.json (docs/data.md)");
  p->add_option("inputs", a.inputs, "input files, directories or '-' (stdin)")->required();
  p->add_option("--out", a.out, "output directory (new or empty; an earlier prepare's only with --overwrite)")
      ->required();
  p->add_option("--tokenizer", a.tokenizer,
                "'byte', a tokenizer.json, a tokenizer.model or a model directory holding one")
      ->capture_default_str();
  p->add_option("--format", a.format, "auto (.jsonl/.ndjson are JSONL, the rest text), text or jsonl")
      ->check(CLI::IsMember({"auto", "text", "jsonl"}))
      ->capture_default_str();
  p->add_option("--field", a.field, "JSONL: the string field holding each document")->capture_default_str();
  p->add_option("--doc-sep", a.doc_sep,
                "text: 'file' (each file is one document), 'blankline' (blocks separated by blank lines) or "
                "'percent' (blocks separated by lines holding only %, the fortune format)")
      ->check(CLI::IsMember({"file", "blankline", "percent"}))
      ->capture_default_str();
  p->add_option("--shard-tokens", a.shard_tokens, "tokens per shard at most")
      ->check(int_range(1, INT64_MAX))
      ->capture_default_str();
  p->add_option("--val-fraction", a.val_fraction,
                "hold out this fraction of the documents as validation shards: document i (0-based) when "
                "floor((i+1)f) > floor(if)")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  p->add_option("--val", a.val_inputs, "validation inputs (files, directories, '-'), written as val shards");
  p->add_option("--threads", a.threads, "encoding threads (0: the hardware's); the output does not depend on it")
      ->check(int_range(0, 4096))
      ->capture_default_str();
  p->add_flag("--overwrite", a.overwrite, "replace the output of an earlier tsp data prepare in --out");
  p->add_option("--progress", a.progress, "auto (a bar on a terminal, else a line every 5 s), bar, lines or none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  return cmd;
}

int run_data(const DataArgs& a, std::ostream& out, std::ostream& err) {
  data::PrepareOptions o;
  o.inputs = a.inputs;
  o.val_inputs = a.val_inputs;
  o.input = input_options(a.format, a.field, a.doc_sep);
  o.tokenizer = a.tokenizer;
  o.out_dir = a.out;
  o.shard_tokens = static_cast<uint64_t>(a.shard_tokens);
  o.val_fraction = a.val_fraction;
  o.threads = static_cast<int>(a.threads);
  o.overwrite = a.overwrite;
  const bool terminal = a.progress == "bar" || (a.progress == "auto" && &err == &std::cerr && ::isatty(2));
  const data::PrepareResult r = data::prepare_token_shards(o, a.progress == "none" ? nullptr : &err, terminal);
  const data::ShardManifest& m = r.manifest;
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.2f s, %.1f MB/s", r.seconds,
                r.seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / r.seconds : 0.0);
  out << "prepared " << m.documents << " documents, " << r.bytes << " bytes from " << m.sources.size()
      << " files with the " << m.tokenizer.kind << " tokenizer (" << m.tokenizer.vocab_size << " ids, EOS "
      << m.tokenizer.eos_id << "): " << r.train_tokens << " train tokens in " << m.train.size() << " shards, "
      << r.val_tokens << " val tokens in " << m.val.size() << " shards; " << rate << ", " << r.threads
      << " threads; " << (std::filesystem::path(a.out) / data::kShardManifestName).string() << std::endl;
  return 0;
}

}  // namespace tsp::cli
