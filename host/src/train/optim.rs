//! Adam and AdamW whose state (first and second moments, step counts) is saved with the run, so that a
//! resumed training run continues exactly where an interrupted one stopped. libtorch's optimizers (what
//! `tch::nn::Optimizer` wraps) keep their moments in C++ and cannot be saved; this module applies the same
//! update rule with tensor operations:
//!
//! ```text
//! Adam:   g ← g + wd·p                      AdamW: p ← p·(1 − lr·wd)
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! with β1 = 0.9, β2 = 0.999, ε = 1e-8 (the defaults of `tch::nn::Adam`/`AdamW` and `torch.optim`), `t`
//! counted per parameter (a parameter without a gradient is not stepped). Parameter groups come from the
//! var store (`set_group`), each with its own learning rate.
use std::path::Path;

use tch::{nn, Kind, Tensor};

use crate::{Error, Result};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Weight-decay flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decay {
    /// L2 added to the gradient (`torch.optim.Adam`).
    Coupled,
    /// Decoupled decay applied to the weights (`torch.optim.AdamW`).
    Decoupled,
}

struct Param {
    name: String,
    p: Tensor,
    group: usize,
    m: Tensor,
    v: Tensor,
    step: i64,
}

/// Adam / AdamW over the trainable variables of one var store.
pub struct Adam {
    params: Vec<Param>,
    lr: Vec<f64>,
    wd: f64,
    decay: Decay,
}

impl Adam {
    /// An optimizer over `vs`'s trainable variables (sorted by name), every group at `lr`.
    pub fn new(vs: &nn::VarStore, lr: f64, wd: f64, decay: Decay) -> Self {
        let vars = vs.variables_.lock().unwrap_or_else(|e| e.into_inner());
        let mut named: Vec<(&String, &Tensor)> = vars.named_variables.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let mut params = Vec::new();
        for (name, t) in named {
            // Trainable variables carry their group; the rest (BN statistics, frozen layers) are skipped.
            let Some(var) =
                vars.trainable_variables.iter().find(|v| v.tensor.data_ptr() == t.data_ptr())
            else {
                continue;
            };
            let zeros = tch::no_grad(|| t.zeros_like());
            params.push(Param {
                name: name.clone(),
                p: t.shallow_clone(),
                group: var.group,
                m: zeros.copy(),
                v: zeros,
                step: 0,
            });
        }
        let groups = params.iter().map(|p| p.group + 1).max().unwrap_or(1);
        Adam { params, lr: vec![lr; groups], wd, decay }
    }

    /// Sets the learning rate of one parameter group (ignored for a group with no parameters).
    pub fn set_lr_group(&mut self, group: usize, lr: f64) {
        if let Some(g) = self.lr.get_mut(group) {
            *g = lr;
        }
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.p.zero_grad();
        }
    }

    /// Scales the gradients so that their joint L2 norm is at most `max` (as `torch.nn.utils.clip_grad_norm_`).
    pub fn clip_grad_norm(&mut self, max: f64) {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.p.grad())
                .filter(|g| g.defined())
                .map(|g| g.norm())
                .collect();
            if norms.is_empty() {
                return;
            }
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for p in &self.params {
                    let mut g = p.p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(coef);
                    }
                }
            }
        });
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        tch::no_grad(|| {
            for prm in &mut self.params {
                let grad = prm.p.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = self.lr[prm.group];
                prm.step += 1;
                let grad = match self.decay {
                    Decay::Coupled if self.wd != 0.0 => grad + &prm.p * self.wd,
                    _ => grad,
                };
                if self.decay == Decay::Decoupled && self.wd != 0.0 {
                    let _ = prm.p.g_mul_scalar_(1.0 - lr * self.wd);
                }
                let _ = prm.m.g_mul_scalar_(BETA1);
                let _ = prm.m.g_add_(&(&grad * (1.0 - BETA1)));
                let _ = prm.v.g_mul_scalar_(BETA2);
                let _ = prm.v.g_add_(&(&grad * &grad * (1.0 - BETA2)));
                let bc1 = 1.0 - BETA1.powi(prm.step as i32);
                let bc2 = 1.0 - BETA2.powi(prm.step as i32);
                let denom = prm.v.sqrt() / bc2.sqrt() + EPS;
                let _ = prm.p.g_sub_(&(&prm.m / denom * (lr / bc1)));
            }
        });
    }

    /// Saves the moments and step counts (safetensors, `m.NAME`, `v.NAME`, `step.NAME`), written to a
    /// temporary file and renamed, so a crash never leaves a half-written state.
    ///
    /// # Errors
    /// Writing fails.
    pub fn save(&self, file: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::with_capacity(self.params.len() * 3);
        for p in &self.params {
            named.push((format!("m.{}", p.name), p.m.to_device(tch::Device::Cpu)));
            named.push((format!("v.{}", p.name), p.v.to_device(tch::Device::Cpu)));
            named.push((format!("step.{}", p.name), Tensor::from_slice(&[p.step])));
        }
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tmp = file.with_extension("safetensors.tmp");
        Tensor::write_safetensors(&refs, &tmp).map_err(Error::Torch)?;
        std::fs::rename(&tmp, file).map_err(|e| Error::io(file, e))
    }

    /// Loads what [`Adam::save`] wrote for the same parameters.
    ///
    /// # Errors
    /// The file cannot be read, or lacks a parameter, or a shape differs.
    pub fn load(&mut self, file: &Path) -> Result<()> {
        let saved = Tensor::read_safetensors(file).map_err(Error::Torch)?;
        let find = |key: &str| -> Result<&Tensor> {
            saved.iter().find(|(k, _)| k == key).map(|(_, t)| t).ok_or_else(|| Error::Dataset {
                path: file.into(),
                msg: format!("optimizer state has no {key}"),
            })
        };
        for p in &mut self.params {
            let (m, v) = (find(&format!("m.{}", p.name))?, find(&format!("v.{}", p.name))?);
            if m.size() != p.p.size() || v.size() != p.p.size() {
                return Err(Error::Dataset {
                    path: file.into(),
                    msg: format!("optimizer state for {} has shape {:?}", p.name, m.size()),
                });
            }
            let step = find(&format!("step.{}", p.name))?.to_kind(Kind::Int64).int64_value(&[0]);
            tch::no_grad(|| {
                p.m.copy_(m);
                p.v.copy_(v);
            });
            p.step = step;
        }
        Ok(())
    }
}

/// Restores an optimizer's moments for a resumed run; a run from before they were saved resumes with
/// fresh moments (said in the log), as it always did.
///
/// # Errors
/// The file exists but cannot be loaded.
pub fn resume(opt: &mut Adam, file: &Path) -> Result<()> {
    if file.is_file() {
        opt.load(file)
    } else {
        tracing::warn!("{} missing: resuming with fresh optimizer moments", file.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::Device;

    /// The same steps through libtorch's optimizer and through ours give the same weights (fixed
    /// numbers, no random generator: the tests of this crate run in parallel and share libtorch's).
    fn same_as_libtorch(decay: Decay) {
        let vals = |n: usize, k: f32| -> Vec<f32> {
            (0..n).map(|i| (i as f32 * 0.37 + k).sin() * 0.8).collect()
        };
        let x = Tensor::from_slice(&vals(40, 1.0)).view([8, 5]);
        let w0 = Tensor::from_slice(&vals(15, 2.0)).view([3, 5]);
        let run = |ours: bool| -> Vec<f32> {
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var_copy("w", &w0);
            let w2 = vs.root().set_group(1).var_copy("w2", &(&w0 * 0.5));
            let loss = || x.matmul(&w.tr()).tanh().matmul(&w2).square().sum(Kind::Float);
            if ours {
                let mut opt = Adam::new(&vs, 0.05, 0.1, decay);
                opt.set_lr_group(1, 0.02);
                for _ in 0..6 {
                    opt.zero_grad();
                    loss().backward();
                    opt.clip_grad_norm(1.0);
                    opt.step();
                }
            } else {
                let mut opt = match decay {
                    Decay::Coupled => nn::Adam { wd: 0.1, ..Default::default() }.build(&vs, 0.05),
                    Decay::Decoupled => {
                        nn::AdamW { wd: 0.1, ..Default::default() }.build(&vs, 0.05)
                    }
                }
                .unwrap();
                opt.set_lr_group(1, 0.02);
                for _ in 0..6 {
                    opt.backward_step_clip_norm(&loss(), 1.0);
                }
            }
            let mut v = Vec::<f32>::try_from(w.reshape([-1])).unwrap();
            v.extend(Vec::<f32>::try_from(w2.reshape([-1])).unwrap());
            v
        };
        let (a, b) = (run(true), run(false));
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d < 1e-6, "{decay:?}: ours vs libtorch differ by {d}");
    }

    #[test]
    fn adam_matches_libtorch() {
        same_as_libtorch(Decay::Coupled);
    }

    #[test]
    fn adamw_matches_libtorch() {
        same_as_libtorch(Decay::Decoupled);
    }

    #[test]
    fn saved_state_continues_the_same_trajectory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opt.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let mut w = vs.root().var_copy("w", &Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.1]));
        let mut opt = Adam::new(&vs, 0.1, 0.0, Decay::Coupled);
        fn steps(opt: &mut Adam, w: &Tensor, n: usize) {
            for _ in 0..n {
                opt.zero_grad();
                (w * w).sum(Kind::Float).backward();
                opt.step();
            }
        }
        steps(&mut opt, &w, 3);
        opt.save(&file).unwrap();
        let at3 = tch::no_grad(|| w.copy());
        steps(&mut opt, &w, 3);
        let straight = Vec::<f32>::try_from(&w).unwrap();
        tch::no_grad(|| w.copy_(&at3));
        let mut resumed = Adam::new(&vs, 0.1, 0.0, Decay::Coupled);
        resumed.load(&file).unwrap();
        steps(&mut resumed, &w, 3);
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), straight);
    }
}
