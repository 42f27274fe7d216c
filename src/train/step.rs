//! What every update shares: the global gradient norm, clipping, and the one policy for a
//! non-finite loss or gradient (skip the update; nothing NaN reaches the weights or the moments).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use crate::model::CausalLm;
use crate::train::optimizer::Optimizer;

/// Why an update with this loss and gradient norm must not be applied; `None` when it may.
pub fn skip_reason(loss: f64, grad_norm: f64) -> Option<String> {
    if !loss.is_finite() {
        Some(format!("loss is {loss}; update skipped, weights unchanged"))
    } else if !grad_norm.is_finite() {
        Some(format!(
            "gradient norm is {grad_norm}; update skipped, weights unchanged"
        ))
    } else {
        None
    }
}

/// Squared global L2 norm of the gradients, `[1]`, on the plain device.
pub fn grad_norm_squared(model: &CausalLm, grads: &GradientsParams, device: &Device) -> Tensor<1> {
    let mut norm = GradNormSquared { grads, total: None };
    model.visit(&mut norm);
    norm.total.unwrap_or_else(|| Tensor::zeros([1], device))
}

/// Clips the global gradient norm to `max_norm` (as torch's `clip_grad_norm_`; 0 disables) and
/// applies one optimizer step to `model`, in place.
pub fn clipped_step(
    optim: &mut Optimizer,
    model: &mut CausalLm,
    grads: GradientsParams,
    grad_norm: f64,
    max_norm: f64,
    lr: f64,
) {
    let scale = if max_norm > 0.0 && grad_norm > max_norm {
        max_norm / (grad_norm + 1e-6)
    } else {
        1.0
    };
    update_in_place(model, |model| optim.step(lr, model, grads, scale));
}

/// `model` replaced by `f(model)`, moved rather than cloned: the update then holds the only
/// reference to each weight, and the CPU optimizer writes it in place instead of copying it. A
/// panic inside `f` aborts the process, since `model` is moved out meanwhile.
fn update_in_place(model: &mut CausalLm, f: impl FnOnce(CausalLm) -> CausalLm) {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the value is read out of `model` once and a new one written back before anything
    // else can see `model`; if `f` unwinds, the guard aborts before the moved-out value could
    // be dropped a second time.
    unsafe {
        let taken = std::ptr::read(model);
        std::ptr::write(model, f(taken));
    }
    std::mem::forget(guard);
}

/// Sum of squared gradient entries over all parameters.
struct GradNormSquared<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for GradNormSquared<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}
