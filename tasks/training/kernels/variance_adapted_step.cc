// VarianceAdaptedStep: the per-variable part of one M-SVAG or SVAG step in one pass over memory.
//
// tasks/training/msvag.py states the equations (Balles & Hennig 2018, arXiv:1705.07774) and computes them
// with 14 elementwise TensorFlow ops per variable before the θ update; each op reads and writes whole
// tensors, so the step costs ~14 passes over every variable. This kernel does the same arithmetic for
// one coordinate at a time, in registers: m and v are read and written once, the gradient read once, and
// δ = γ·direction written once. The optimizer then applies θ ← θ − step_size·δ with the SGD kernel
// (ApplyGradientDescent), as the pure-TF path does.
//
// Bit-identical to the pure-TF path, by construction: the loop body below performs exactly the float
// operations of msvag.py's `_update`, in the same order, each rounded to T as TensorFlow's Eigen kernel
// rounds it (IEEE add, subtract, multiply and divide are correctly rounded, so the same operands in the
// same order give the same bits however they are vectorised). The comment on each line names the TF op
// it replaces. Two things would break that, and the build guards against both:
//  - Contraction of a*b ± c into one fused multiply-add (FMA) rounds once instead of twice. GCC contracts
//    by default in GNU mode (-ffp-contract=fast) wherever the target has FMA (aarch64 always; x86-64 with
//    -mfma or -march=native), so the library is compiled with -ffp-contract=off.
//  - Value-changing optimisations (-ffast-math, -Ofast: reassociation, reciprocal division, NaN
//    assumptions) are never enabled. The loop is vectorised (-O2 -fvect-cost-model=dynamic), which changes
//    no result: each lane rounds exactly as the scalar operation would, and no lane depends on another.
// Where TF's ops have special semantics, the kernel spells them out: Minimum/Maximum propagate NaN,
// DivNoNan and MulNoNan return 0 where their divisor/second factor is 0.
//
// The mapping, with a = 1−β, c = 1−β^t, w = w_t, F = the largest finite T (msvag.py's docstring):
//    m_t = m − (m − g)·a                      v_t = v − (v − g²)·a          (in place, as the SGD kernel does)
//    μ   = min(m_t², F)                       e   = max(c·v_t − μ, 0)
//    γ   = μ / (m_t² + w·e)   with w·e = 0 where w = 0, and γ = 0 where the denominator is 0
//    δ   = γ·m_t (M-SVAG: the 1/c of m̂ is folded into the step size) or γ·g (SVAG)
//
// Ref variables only (graph mode under disable_v2_behavior, the product's case); msvag.py keeps the
// pure-TF path for resource variables, other dtypes and a library that is not built. Built by
// `python -m tasks.training.kernels build` (`make kernels`), which passes the flags above.

// The training-op helpers instantiate Eigen expressions on the thread-pool device.
#define EIGEN_USE_THREADS

#include <cstdint>
#include <cstring>
#include <limits>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace fmnist {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShapeUtils;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using CPUDevice = Eigen::ThreadPoolDevice;

REGISTER_OP("VarianceAdaptedStep")
    .Input("m: Ref(T)")                // m_{t-1}, updated in place to m_t
    .Input("v: Ref(T)")                // v_{t-1}, updated in place to v_t
    .Input("grad: T")                  // g_t
    .Input("one_minus_beta: T")        // a = 1-β            (scalars: StepScalars in msvag.py)
    .Input("bias_correction: T")       // c = 1-β^t
    .Input("variance_weight: T")       // w_t, 0 at t = 1
    .Output("delta: T")                // γ_t·m_t (M-SVAG) or γ_t·g_t (SVAG)
    .Attr("T: {float, double}")
    .Attr("uses_momentum: bool")
    .Attr("use_locking: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape = c->input(0);
      TF_RETURN_IF_ERROR(c->Merge(shape, c->input(1), &shape));
      TF_RETURN_IF_ERROR(c->Merge(shape, c->input(2), &shape));
      ShapeHandle unused;
      for (int scalar = 3; scalar < 6; ++scalar) TF_RETURN_IF_ERROR(c->WithRank(c->input(scalar), 0, &unused));
      c->set_output(0, shape);
      return absl::OkStatus();
    })
    .Doc("One M-SVAG/SVAG step for one variable: updates m and v in place, returns gamma times the direction.");

// TF's Minimum and Maximum propagate NaN (Eigen::PropagateNaN). Here the second operand is never NaN (the
// constants F and 0), so `b < a ? b : a` and `a < b ? b : a` do: a comparison with a NaN is false, which
// selects a. Both are branch-free selects (minss/maxss on x86), so the loop vectorises. Where both operands
// are zeros of opposite signs the result's sign may differ from Eigen's, which nothing downstream can
// observe: the excess only enters m_t² + w·e with m_t² >= +0, and +0 + (−0) = +0.
template <typename T>
inline T MinimumOfNonNan(T a, T b_not_nan) {
  return b_not_nan < a ? b_not_nan : a;
}

template <typename T>
inline T MaximumOfNonNan(T a, T b_not_nan) {
  return a < b_not_nan ? b_not_nan : a;
}

// DivNoNan as Eigen's packet code computes it: the quotient, with every bit cleared where the divisor is 0
// (+0). Not `b == 0 ? 0 : a / b`: GCC moves that division into a branch (a division may trap, so it is not
// executed where it is not needed), and a loop with a branch does not vectorise.
template <typename T, typename Bits>
inline T DivNoNan(T a, T b) {
  static_assert(sizeof(T) == sizeof(Bits), "Bits must have T's width");
  const T quotient = a / b;
  Bits bits;
  std::memcpy(&bits, &quotient, sizeof bits);
  bits &= b == T(0) ? Bits(0) : ~Bits(0);
  T result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

template <typename T>
inline T DivNoNan(T a, T b);
template <>
inline float DivNoNan(float a, float b) {
  return DivNoNan<float, uint32_t>(a, b);
}
template <>
inline double DivNoNan(double a, double b) {
  return DivNoNan<double, uint64_t>(a, b);
}

// One pass over coordinates [begin, end). Templated on what is constant over the pass, so the loop body
// has no branch: the direction, and whether w = 0 (then MulNoNan(excess, w) is 0 even for excess = inf).
template <typename T, bool kUsesMomentum, bool kWeightIsZero>
void VarianceAdaptedPass(T* __restrict m, T* __restrict v, const T* __restrict grad, T* __restrict delta,
                         int64_t begin, int64_t end, T one_minus_beta, T bias_correction, T variance_weight) {
  const T largest = std::numeric_limits<T>::max();
  for (int64_t i = begin; i < end; ++i) {
    const T g = grad[i];
    const T m_t = m[i] - (m[i] - g) * one_minus_beta;      // Sub(m, g); ApplyGradientDescent(m, a, ·)
    const T v_t = v[i] - (v[i] - g * g) * one_minus_beta;  // Square(g); Sub(v, ·); ApplyGradientDescent(v, a, ·)
    m[i] = m_t;
    v[i] = v_t;
    const T m_sq = m_t * m_t;                                            // Square(m_t)
    const T m_sq_finite = MinimumOfNonNan(m_sq, largest);                // Minimum(m_sq, F)
    const T excess = MaximumOfNonNan(bias_correction * v_t - m_sq_finite, T(0));  // Mul(c, v_t); Sub; Maximum
    const T weighted = kWeightIsZero ? T(0) : excess * variance_weight;  // MulNoNan(excess, w)
    const T denominator = m_sq + weighted;                               // Add
    const T gamma = DivNoNan(m_sq_finite, denominator);                  // DivNoNan(μ, denominator)
    delta[i] = gamma * (kUsesMomentum ? m_t : g);                        // Mul(gamma, direction)
  }
}

template <typename T, bool kUsesMomentum>
void VarianceAdaptedPass(T* m, T* v, const T* grad, T* delta, int64_t begin, int64_t end, T one_minus_beta,
                         T bias_correction, T variance_weight) {
  if (variance_weight == T(0)) {
    VarianceAdaptedPass<T, kUsesMomentum, true>(m, v, grad, delta, begin, end, one_minus_beta, bias_correction,
                                                variance_weight);
  } else {
    VarianceAdaptedPass<T, kUsesMomentum, false>(m, v, grad, delta, begin, end, one_minus_beta, bias_correction,
                                                 variance_weight);
  }
}

template <typename T>
class VarianceAdaptedStepOp : public OpKernel {
 public:
  explicit VarianceAdaptedStepOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("uses_momentum", &uses_momentum_));
    OP_REQUIRES_OK(context, context->GetAttr("use_locking", &use_locking_));
  }

  void Compute(OpKernelContext* context) override {
    // The locking and uninitialised-variable checks of TF's own training ops (ApplyAdam and the rest).
    auto locks = ::tensorflow::MaybeLockVariableInputMutexesInOrder<CPUDevice, T>(
        context, use_locking_, /*sparse=*/false, {0, 1});
    Tensor m;
    Tensor v;
    OP_REQUIRES_OK(context, ::tensorflow::GetInputTensorFromVariable<CPUDevice, T>(
                                context, 0, use_locking_, /*sparse=*/false, &m));
    OP_REQUIRES_OK(context, ::tensorflow::GetInputTensorFromVariable<CPUDevice, T>(
                                context, 1, use_locking_, /*sparse=*/false, &v));
    OP_REQUIRES(context, m.IsInitialized() && v.IsInitialized(),
                ::tensorflow::errors::FailedPrecondition("VarianceAdaptedStep: the m or v slot is uninitialized: ",
                                                         requested_input(0), ", ", requested_input(1)));
    const Tensor& grad = context->input(2);
    OP_REQUIRES(context, m.shape().IsSameSize(grad.shape()) && v.shape().IsSameSize(grad.shape()),
                ::tensorflow::errors::InvalidArgument(
                    "VarianceAdaptedStep: m, v and grad must have one shape; found ", m.shape().DebugString(),
                    ", ", v.shape().DebugString(), " and ", grad.shape().DebugString()));
    for (int scalar = 3; scalar < 6; ++scalar) {
      OP_REQUIRES(context, TensorShapeUtils::IsScalar(context->input(scalar).shape()),
                  ::tensorflow::errors::InvalidArgument("VarianceAdaptedStep: input ", scalar,
                                                        " must be a scalar; found shape ",
                                                        context->input(scalar).shape().DebugString()));
    }
    const T one_minus_beta = context->input(3).scalar<T>()();
    const T bias_correction = context->input(4).scalar<T>()();
    const T variance_weight = context->input(5).scalar<T>()();

    Tensor* delta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, grad.shape(), &delta));
    T* m_data = m.flat<T>().data();
    T* v_data = v.flat<T>().data();
    const T* grad_data = grad.flat<T>().data();
    T* delta_data = delta->flat<T>().data();
    const bool uses_momentum = uses_momentum_;
    auto pass = [=](int64_t begin, int64_t end) {
      if (uses_momentum) {
        VarianceAdaptedPass<T, true>(m_data, v_data, grad_data, delta_data, begin, end, one_minus_beta,
                                     bias_correction, variance_weight);
      } else {
        VarianceAdaptedPass<T, false>(m_data, v_data, grad_data, delta_data, begin, end, one_minus_beta,
                                      bias_correction, variance_weight);
      }
    };
    // Over the intra-op threads, as TF's elementwise kernels are. Every coordinate is independent, so how
    // the range is split changes no result.
    const auto* workers = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, grad.NumElements(), kCostPerCoordinate, pass);
  }

 private:
  // Shard's cost per unit of work, in cycles: about 20 float operations and 5 loads/stores per coordinate.
  static constexpr int64_t kCostPerCoordinate = 40;
  bool uses_momentum_ = true;
  bool use_locking_ = false;
};

REGISTER_KERNEL_BUILDER(Name("VarianceAdaptedStep").Device(DEVICE_CPU).TypeConstraint<float>("T"),
                        VarianceAdaptedStepOp<float>);
REGISTER_KERNEL_BUILDER(Name("VarianceAdaptedStep").Device(DEVICE_CPU).TypeConstraint<double>("T"),
                        VarianceAdaptedStepOp<double>);

}  // namespace fmnist
