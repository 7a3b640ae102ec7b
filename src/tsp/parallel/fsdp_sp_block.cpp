// FSDP-over-SP decoder block: block-wise projections on an all-gathered layer, attention over the
// all-gathered K|V of every head, and the backward with one reduce-scatter of the full-layer
// gradient (TSP.md §8; docs/fsdp_sp.md). The math is model/decoder_block.cpp's, term for term.
#include "tsp/parallel/fsdp_sp_block.h"

#include "tsp/core/check.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/swiglu.h"
#include "tsp/parallel/layout_kernels.h"
#include "tsp/parallel/shard_exchange.h"

namespace tsp::parallel {

namespace {

using namespace layout_kernels;
using model::BlockActivations;

// Column block r of width w of a [T, N] buffer (starting at column `first`).
Tensor cols(const Tensor& t, int64_t first, int64_t r, int64_t w) {
  return t.slice(1, first + r * w, w);
}

// [B, S/D, heads, d] view of heads [first, first + count) of a fused [T, width] buffer.
Tensor heads_of(const Tensor& fused, const FsdpSpContext& ctx, int64_t first, int64_t count) {
  return layout_kernels::heads_of(fused, ctx.batch(), ctx.local_len(), ctx.config().head_dim(),
                                  first, count);
}

// The D pieces of an all-gathered layer, with contiguous [h] copies of the two norm gains (the
// kernel needs a contiguous gain; the gathered gain is D strided blocks).
struct FullLayer {
  std::vector<FsdpLayerPiece> pieces;
  Tensor input_norm, post_norm;
};

std::vector<FsdpLayerPiece> pieces_of(const FsdpSpContext& ctx, const Tensor& packed) {
  const int64_t P = ctx.sizes().piece;
  TSP_ASSERT(packed.rank() == 1 && packed.numel() == ctx.degree() * P && packed.is_contiguous(),
             "fsdp-sp: a full layer must be a contiguous [", ctx.degree() * P, "] buffer, got ",
             packed.describe());
  std::vector<FsdpLayerPiece> out;
  for (int r = 0; r < ctx.degree(); ++r)
    out.push_back(piece_views(packed.slice(0, r * P, P), ctx.config(), ctx.sizes()));
  return out;
}

FullLayer full_layer(const FsdpSpContext& ctx, const Tensor& gathered) {
  FullLayer w{pieces_of(ctx, gathered), {}, {}};
  const int64_t h = ctx.config().hidden_size(), hr = ctx.sizes().h_rows;
  w.input_norm = Tensor::empty({h}, gathered.dtype(), MemCategory::workspace);
  w.post_norm = Tensor::empty({h}, gathered.dtype(), MemCategory::workspace);
  for (int r = 0; r < ctx.degree(); ++r) {
    w.input_norm.slice(0, r * hr, hr).copy_from(w.pieces[r].input_norm);
    w.post_norm.slice(0, r * hr, hr).copy_from(w.pieces[r].post_norm);
  }
  return w;
}

// The full-layer f32 gradient in the piece layout (zeros), plus contiguous [h] gain gradients
// that are copied into the pieces' norm slots before the reduce-scatter.
struct FullGrad {
  Tensor packed;
  std::vector<FsdpLayerPiece> pieces;
  Tensor input_norm, post_norm;

  explicit FullGrad(const FsdpSpContext& ctx)
      : packed(Tensor::zeros({ctx.degree() * ctx.sizes().piece}, DType::f32, MemCategory::comm)),
        pieces(pieces_of(ctx, packed)),
        input_norm(gain_grad(ctx)),
        post_norm(gain_grad(ctx)) {}

  static Tensor gain_grad(const FsdpSpContext& ctx) {
    return Tensor::zeros({ctx.config().hidden_size()}, DType::f32, MemCategory::workspace);
  }

  void pack_gains(const FsdpSpContext& ctx) {
    const int64_t hr = ctx.sizes().h_rows;
    for (int r = 0; r < ctx.degree(); ++r) {
      pieces[r].input_norm.copy_from(input_norm.slice(0, r * hr, hr));
      pieces[r].post_norm.copy_from(post_norm.slice(0, r * hr, hr));
    }
  }
};

// K|V of every head for the whole sequence (one group of all heads, layout_kernels.h).
KvExchange kv_exchange(const FsdpSpContext& ctx) {
  return KvExchange(ctx.comm(), ctx.clock(), ctx.dtype(), ctx.batch(), ctx.seq(),
                    2 * ctx.config().kv_dim());
}

void attention_forward(const FsdpSpContext& ctx, const FullLayer& w, const Tensor& x_in,
                       BlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const FsdpSpSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads(), d = c.head_dim();
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, Tensor(), norm_options(c));
  acts.qkv = Tensor::empty({T, qd + 2 * kvd}, ctx.dtype(), cat);
  for (int r = 0; r < ctx.degree(); ++r) {
    mm(n, w.pieces[r].q, cols(acts.qkv, 0, r, s.q_rows), kXWt);
    mm(n, w.pieces[r].k, cols(acts.qkv, qd, r, s.kv_rows), kXWt);
    mm(n, w.pieces[r].v, cols(acts.qkv, qd + kvd, r, s.kv_rows), kXWt);
    if (c.qkv_bias()) {  // Qwen2: each row block's biases on its own columns, before RoPE
      kernels::bias_add_forward(cols(acts.qkv, 0, r, s.q_rows), w.pieces[r].q_bias);
      kernels::bias_add_forward(cols(acts.qkv, qd, r, s.kv_rows), w.pieces[r].k_bias);
      kernels::bias_add_forward(cols(acts.qkv, qd + kvd, r, s.kv_rows), w.pieces[r].v_bias);
    }
  }
  const Tensor q4 = heads_of(acts.qkv, ctx, 0, H);
  kernels::rope_forward(q4, ctx.rope());
  kernels::rope_forward(heads_of(acts.qkv, ctx, H, Hkv), ctx.rope());
  acts.attn = Tensor::empty({T, qd}, ctx.dtype(), cat);
  acts.lse = Tensor::empty({ctx.batch(), H, ctx.local_len()}, DType::f32, cat);
  {
    KvExchange kv = kv_exchange(ctx);
    const Tensor kv4 =
        kv.gather(acts.qkv.slice(1, qd, 2 * kvd)).view({ctx.batch(), ctx.seq(), 2 * Hkv, d});
    Tensor o4 = acts.attn.view({ctx.batch(), ctx.local_len(), H, d});
    kernels::flash_attention_forward(q4, kv4.slice(2, 0, Hkv), kv4.slice(2, Hkv, Hkv),
                                     ctx.local_positions(), ctx.gathered_positions(), o4, acts.lse,
                                     c.attention_options());
  }
  acts.x_mid = Tensor::empty({T, h}, ctx.dtype(), cat);
  acts.x_mid.copy_from(x_in);
  for (int r = 0; r < ctx.degree(); ++r)
    mm(acts.attn, w.pieces[r].o, cols(acts.x_mid, 0, r, s.h_rows), kXWtAcc);
}

void mlp_forward(const FsdpSpContext& ctx, const FullLayer& w, const Tensor& x_out,
                 BlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const FsdpSpSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), F = c.intermediate_size();
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, Tensor(), norm_options(c));
  acts.gate_up = Tensor::empty({T, 2 * F}, ctx.dtype(), cat);
  for (int r = 0; r < ctx.degree(); ++r) {
    mm(n, w.pieces[r].gate, cols(acts.gate_up, 0, r, s.ffn_rows), kXWt);
    mm(n, w.pieces[r].up, cols(acts.gate_up, F, r, s.ffn_rows), kXWt);
  }
  if (!x_out.defined()) return;
  Tensor act = Tensor::empty({T, F}, ctx.dtype(), MemCategory::workspace);
  kernels::swiglu_forward(acts.gate_up.slice(1, 0, F), acts.gate_up.slice(1, F, F), act);
  Tensor out = x_out;
  out.copy_from(acts.x_mid);
  for (int r = 0; r < ctx.degree(); ++r)
    mm(act, w.pieces[r].down, cols(out, 0, r, s.h_rows), kXWtAcc);
}

void mlp_backward(const FsdpSpContext& ctx, const FullLayer& w, const BlockActivations& acts,
                  const Tensor& dx, FullGrad& g) {
  const model::ModelConfig& c = ctx.config();
  const FsdpSpSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), F = c.intermediate_size(), D = ctx.degree();
  const Tensor gate = acts.gate_up.slice(1, 0, F), up = acts.gate_up.slice(1, F, F);
  const Tensor dy = as_gemm_input(dx, dt);
  Tensor act = Tensor::empty({T, F}, dt, MemCategory::workspace);
  kernels::swiglu_forward(gate, up, act);
  for (int r = 0; r < D; ++r) mm(cols(dy, 0, r, s.h_rows), act, g.pieces[r].down, kDWAcc);
  // act := d act = dy @ W_down, summed over the row blocks of W_down.
  const Tensor dact = f32_accumulator(act);
  for (int r = 0; r < D; ++r)
    mm(cols(dy, 0, r, s.h_rows), w.pieces[r].down, dact, r == 0 ? kDyW : kDyWAcc);
  finish_accumulator(dact, act);
  kernels::swiglu_backward(act, gate, up, gate, up);  // gate_up := [dgate | dup] in place
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::empty({T, h}, DType::f32, MemCategory::workspace);
  for (int r = 0; r < D; ++r) {
    const Tensor dg = cols(gate, 0, r, s.ffn_rows), du = cols(up, 0, r, s.ffn_rows);
    mm(dg, n, g.pieces[r].gate, kDWAcc);
    mm(du, n, g.pieces[r].up, kDWAcc);
    mm(dg, w.pieces[r].gate, dn, r == 0 ? kDyW : kDyWAcc);
    mm(du, w.pieces[r].up, dn, kDyWAcc);
  }
  kernels::rmsnorm_backward(dn, acts.x_mid, w.post_norm, rstd, dn, g.post_norm);
  add_f32(dx, dn);
}

// dattn [T, H d] (activation dtype) = dy @ W_o summed over W_o's row blocks; dW_o += dy^T attn.
Tensor o_proj_backward(const FsdpSpContext& ctx, const FullLayer& w, const BlockActivations& acts,
                       const Tensor& dy, FullGrad& g) {
  const FsdpSpSizes& s = ctx.sizes();
  Tensor dattn =
      Tensor::empty({ctx.tokens(), ctx.config().q_dim()}, ctx.dtype(), MemCategory::workspace);
  const Tensor acc = f32_accumulator(dattn);
  for (int r = 0; r < ctx.degree(); ++r) {
    const Tensor dy_r = cols(dy, 0, r, s.h_rows);
    mm(dy_r, acts.attn, g.pieces[r].o, kDWAcc);
    mm(dy_r, w.pieces[r].o, acc, r == 0 ? kDyW : kDyWAcc);
  }
  finish_accumulator(acc, dattn);
  return dattn;
}

void attention_backward(const FsdpSpContext& ctx, const FullLayer& w, const Tensor& x_in,
                        const BlockActivations& acts, const Tensor& dx, FullGrad& g) {
  const model::ModelConfig& c = ctx.config();
  const FsdpSpSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads(), d = c.head_dim();
  const int64_t B = ctx.batch(), Sl = ctx.local_len();
  Tensor dattn = o_proj_backward(ctx, w, acts, as_gemm_input(dx, dt), g);
  Tensor dqkv = Tensor::empty({T, qd + 2 * kvd}, dt, MemCategory::workspace);
  Tensor dq4 = heads_of(dqkv, ctx, 0, H);
  {
    KvExchange kv = kv_exchange(ctx);
    const Tensor kv4 = kv.gather(acts.qkv.slice(1, qd, 2 * kvd)).view({B, ctx.seq(), 2 * Hkv, d});
    Tensor dkv_full = Tensor::empty({B, ctx.seq(), 2 * kvd}, DType::f32, MemCategory::workspace);
    const Tensor dkv4 = dkv_full.view({B, ctx.seq(), 2 * Hkv, d});
    Tensor dk4 = dkv4.slice(2, 0, Hkv), dv4 = dkv4.slice(2, Hkv, Hkv);
    kernels::flash_attention_backward(heads_of(acts.qkv, ctx, 0, H), kv4.slice(2, 0, Hkv),
                                      kv4.slice(2, Hkv, Hkv), acts.attn.view({B, Sl, H, d}),
                                      dattn.view({B, Sl, H, d}), acts.lse, ctx.local_positions(),
                                      ctx.gathered_positions(), dq4, dk4, dv4, c.attention_options());
    dqkv.slice(1, qd, 2 * kvd).copy_from(kv.reduce_scatter(dkv_full));
  }
  dattn = Tensor();
  kernels::rope_backward(dq4, ctx.rope());
  kernels::rope_backward(heads_of(dqkv, ctx, H, Hkv), ctx.rope());
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::empty({T, h}, DType::f32, MemCategory::workspace);
  for (int r = 0; r < ctx.degree(); ++r) {
    const Tensor dq = cols(dqkv, 0, r, s.q_rows), dk = cols(dqkv, qd, r, s.kv_rows),
                 dv = cols(dqkv, qd + kvd, r, s.kv_rows);
    mm(dq, n, g.pieces[r].q, kDWAcc);
    mm(dk, n, g.pieces[r].k, kDWAcc);
    mm(dv, n, g.pieces[r].v, kDWAcc);
    if (c.qkv_bias()) {
      kernels::bias_backward(dq, g.pieces[r].q_bias, /*accumulate=*/true);
      kernels::bias_backward(dk, g.pieces[r].k_bias, /*accumulate=*/true);
      kernels::bias_backward(dv, g.pieces[r].v_bias, /*accumulate=*/true);
    }
    mm(dq, w.pieces[r].q, dn, r == 0 ? kDyW : kDyWAcc);
    mm(dk, w.pieces[r].k, dn, kDyWAcc);
    mm(dv, w.pieces[r].v, dn, kDyWAcc);
  }
  kernels::rmsnorm_backward(dn, x_in, w.input_norm, rstd, dn, g.input_norm);
  add_f32(dx, dn);
}

}  // namespace

void validate_fsdp_sp(const model::ModelConfig& config, int degree, int64_t seq) {
  TSP_CHECK(degree >= 1, "fsdp-sp: the degree must be >= 1, got ", degree);
  Zigzag::validate(seq, degree);
  TSP_CHECK(seq <= config.max_position_embeddings(), "fsdp-sp: sequence length ", seq,
            " exceeds max_position_embeddings ", config.max_position_embeddings());
  (void)FsdpSpSizes::of(config, degree);
}

FsdpSpContext::FsdpSpContext(comm::Communicator& comm, const model::ModelConfig& config,
                             DType dtype, int64_t batch, int64_t seq, CommClock* clock)
    : ZigzagContext(config, dtype, batch,
                    (validate_fsdp_sp(config, comm.size(), seq),
                     Zigzag(seq, comm.size(), comm.rank())),
                    clock, "fsdp-sp"),
      comm_(&comm),
      sizes_(FsdpSpSizes::of(config, comm.size())) {}

PieceGather::PieceGather(comm::Communicator& comm, std::vector<Tensor> pieces, bool prefetch,
                         CommClock* clock)
    : comm_(comm), clock_(clock), pieces_(std::move(pieces)), prefetch_(prefetch) {
  if (pieces_.empty()) return;
  const Tensor& p = pieces_.front();
  for (int64_t i = 0; i < buffers(pieces_.size(), prefetch); ++i)
    bufs_[static_cast<size_t>(i)] =
        Tensor::empty({comm.size() * p.numel()}, p.dtype(), MemCategory::comm);
}

void PieceGather::post(size_t i) {
  Tensor& out = bufs_[i % static_cast<size_t>(buffers(pieces_.size(), prefetch_))];
  pending_ = comm::iall_gather(comm_, pieces_[i], out);
  posted_ = static_cast<int64_t>(i);
}

const Tensor& PieceGather::acquire(size_t i) {
  TSP_ASSERT(i == next_ && i < pieces_.size(), "PieceGather: items must be acquired in order, got ",
             i, " (expected ", next_, " of ", pieces_.size(), ")");
  if (posted_ != static_cast<int64_t>(i)) post(i);
  {
    ScopedCommWait w(clock_, CommSite::weight_fetch);
    pending_.wait();
  }
  if (prefetch_ && i + 1 < pieces_.size()) post(i + 1);
  next_ = i + 1;
  return bufs_[i % static_cast<size_t>(buffers(pieces_.size(), prefetch_))];
}

void reduce_scatter_add(const FsdpSpContext& ctx, const Tensor& full, const Tensor& piece) {
  Tensor out = Tensor::empty({piece.numel()}, DType::f32, MemCategory::comm);
  {
    ScopedCommWait w(ctx.clock(), CommSite::grad_reduce);
    comm::reduce_scatter(ctx.comm(), full.view({full.numel()}), out);
  }
  add_f32(piece, out);
}

Tensor gather_full(const FsdpSpContext& ctx, const Tensor& piece) {
  Shape shape = piece.shape();
  shape[0] *= ctx.degree();
  Tensor full = Tensor::empty(shape, piece.dtype(), MemCategory::comm);
  ScopedCommWait w(ctx.clock(), CommSite::weight_fetch);
  comm::all_gather(ctx.comm(), piece, full);
  return full;
}

void fsdp_block_forward(const FsdpSpContext& ctx, const Tensor& gathered, const Tensor& x_in,
                        const Tensor& x_out, BlockActivations& acts, MemCategory cat) {
  const FullLayer w = full_layer(ctx, gathered);
  attention_forward(ctx, w, x_in, acts, cat);
  mlp_forward(ctx, w, x_out, acts, cat);
}

void fsdp_block_backward(const FsdpSpContext& ctx, const Tensor& gathered, const Tensor& x_in,
                         const BlockActivations& acts, const Tensor& dx, const Tensor& grad_piece) {
  TSP_ASSERT(dx.dtype() == DType::f32 && dx.is_contiguous() && dx.dim(0) == ctx.tokens(),
             "fsdp_block_backward: dx must be contiguous f32 [T, h], got ", dx.describe());
  TSP_ASSERT(grad_piece.dtype() == DType::f32 && grad_piece.numel() == ctx.sizes().piece,
             "fsdp_block_backward: grad_piece must be f32 [", ctx.sizes().piece, "], got ",
             grad_piece.describe());
  const FullLayer w = full_layer(ctx, gathered);
  FullGrad g(ctx);
  mlp_backward(ctx, w, acts, dx, g);
  attention_backward(ctx, w, x_in, acts, dx, g);
  g.pack_gains(ctx);
  reduce_scatter_add(ctx, g.packed, grad_piece);
}

}  // namespace tsp::parallel
