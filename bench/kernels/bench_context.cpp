// What the kernel table ran on: CPU, measured peaks, oneDNN's version and effective ISA, the
// vector width simd.h compiles to, and the bf16 path. Printed in the benchmark header (and the
// JSON "context") through benchmark::AddCustomContext.
#include <oneapi/dnnl/dnnl.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "bench_util.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/simd.h"

namespace tsp::bench {
namespace {

// "Intel(R) Xeon(R) Processor (family 6 model 207)" from /proc/cpuinfo; empty elsewhere.
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name, family, model;
  auto value = [](const std::string& l) {
    const size_t c = l.find(':');
    return c == std::string::npos ? std::string() : l.substr(l.find_first_not_of(" \t", c + 1));
  };
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && name.empty()) name = value(line);
    else if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value(line);
    else if (line.rfind("model", 0) == 0 && line.rfind("model name", 0) != 0 && model.empty()) model = value(line);
    if (line.empty() && !name.empty()) break;
  }
  if (name.empty()) return "";
  return name + " (family " + family + " model " + model + ")";
}

// The vector extensions this build was compiled with (-march=native decides them by default).
std::string build_isa() {
  std::string s;
  [[maybe_unused]] auto add = [&s](const char* x) { s += s.empty() ? x : std::string(", ") + x; };
#if defined(__AVX512F__)
  add("AVX-512F");
#endif
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  add("BW/VL");
#endif
#if defined(__AVX512BF16__)
  add("AVX512-BF16");
#endif
#if defined(__AVX512FP16__)
  add("AVX512-FP16");
#endif
#if defined(__AMX_TILE__)
  add("AMX");
#endif
#if !defined(__AVX512F__) && defined(__AVX2__)
  add("AVX2");
#endif
#if !defined(__AVX512F__) && defined(__FMA__)
  add("FMA");
#endif
  return s.empty() ? "no AVX" : s;
}

std::string fmt(const char* f, double a) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

}  // namespace

std::string onednn_isa_name() {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  switch (static_cast<unsigned>(isa)) {
    case dnnl_cpu_isa_all: return "all";
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: break;  // an ISA newer than this header's list (later oneDNN)
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "isa 0x%x", static_cast<unsigned>(isa));
  return buf;
}

bool onednn_isa_has_bf16_dot() {
  // oneDNN's ISA values are bit sets: every ISA that contains avx512_core_bf16 has all its bits.
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  return (isa & bf16) == bf16;
}

std::string tsp_simd_name() { return kernels::simd::kVecName; }

void add_context() {
  const std::string cpu = cpu_model();
  if (!cpu.empty()) benchmark::AddCustomContext("cpu_model", cpu);
  benchmark::AddCustomContext("build_isa", "compiled for " + build_isa());
  const std::vector<FmaPeak>& peaks = fma_peaks();
  for (const FmaPeak& p : peaks) {
    std::string v = fmt("%.1f GFLOP/s", p.gflops) + " (" + p.what + ", " + std::to_string(p.lanes) +
                    " lanes" + (&p == &peaks.front() ? "; the %peak denominator" : "") + ")";
    benchmark::AddCustomContext("fp32_fma_peak_" + std::to_string(p.bits) + "bit", v);
  }
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX512F__)
  // oneDNN JITs for the CPU, not for the build: its GEMMs can use zmm where this peak cannot.
  if (__builtin_cpu_supports("avx512f"))
    benchmark::AddCustomContext("peak_warning",
                                "this CPU has AVX-512F but the build does not (TSP_NATIVE=OFF?): "
                                "oneDNN still runs 512-bit, so GEMM %peak can exceed 100%");
#endif
  std::string bf16 = bf16_peak_description();
  if (onednn_isa_name().find("amx") != std::string::npos)
    bf16 += "; AMX tiles are not counted, so bf16 GEMM %peak can exceed 100%";
  benchmark::AddCustomContext("bf16_peak", bf16);
  const dnnl_version_t* ver = dnnl_version();
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!cap) cap = std::getenv("DNNL_MAX_CPU_ISA");
  char onednn[256];
  std::snprintf(onednn, sizeof onednn, "v%d.%d.%d, effective ISA %s (ONEDNN_MAX_CPU_ISA=%s); bf16 matmul %s",
                ver->major, ver->minor, ver->patch, onednn_isa_name().c_str(), cap ? cap : "unset",
                kernels::gemm_native_bf16() ? "native" : "widened to fp32 by kernels::gemm");
  benchmark::AddCustomContext("onednn", onednn);
  benchmark::AddCustomContext(
      "tsp_simd", tsp_simd_name() +
#if TSP_SIMD_AVX512
                      " (simd.h Vec = F16: zmm, 512-bit; flash attention, RMSNorm, RoPE, SwiGLU, "
                      "AdamW, cross-entropy rows, decode attention; their ceiling is the 512-bit peak)"
#elif TSP_SIMD_AVX2
                      " (simd.h Vec = F8: ymm, 256-bit; their ceiling is the 256-bit peak)"
#else
                      " (simd.h scalar fallback: this build has no AVX2+FMA)"
#endif
  );
}

}  // namespace tsp::bench
