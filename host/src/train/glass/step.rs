//! One GLASS training iteration (docs/glass.md §3b, §3c): GAS on the projected features, the losses,
//! the optimiser steps; and the per-iteration statistics the epoch line averages.

use tch::nn::{Module, ModuleT};
use tch::{Kind, Tensor};

use crate::models::glass::{loss, Distribution, Glass, GlassConfig};
use crate::train::optim::Adam;

/// Loss statistics of one iteration.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StepStats {
    pub(super) loss: f64,
    pub(super) bce: f64,
    pub(super) focal: f64,
    pub(super) p_true: f64,
    pub(super) p_fake: f64,
}

/// Norm of each row, kept as a column: `[N, d] -> [N, 1]`.
fn row_norm(x: &Tensor) -> Tensor {
    x.norm_scalaropt_dim(2, [1], true)
}

/// One GLASS iteration (docs/glass.md §3b, §3c).
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    glass: &Glass,
    cfg: &GlassConfig,
    distribution: Distribution,
    t_feat: &Tensor,
    f_feat: &Tensor,
    mask_s: &Tensor,
    center: Option<&Tensor>,
    opt_p: &mut Adam,
    opt_d: &mut Adam,
) -> StepStats {
    let device = t_feat.device();
    let b = t_feat.size()[0];
    let mut t_rows = Glass::rows(t_feat);
    let mut f_rows = Glass::rows(f_feat);
    let mut m = mask_s.reshape([-1]).to_kind(Kind::Float);
    let mut c_rows = center.map(|c| c.repeat([b, 1]));
    if cfg.patch_fraction < 1.0 {
        // Patch-row sampling (edge preset): a random subset of positions plus every LAS-anomalous one.
        let keep = Tensor::rand([m.size()[0]], (Kind::Float, device))
            .lt(cfg.patch_fraction)
            .logical_or(&m.gt(0.5));
        let idx = keep.nonzero().squeeze_dim(1);
        t_rows = t_rows.index_select(0, &idx);
        f_rows = f_rows.index_select(0, &idx);
        m = m.index_select(0, &idx);
        c_rows = c_rows.map(|c| c.index_select(0, &idx));
    }
    let m = m.view([-1, 1]);
    let n = t_rows.size()[0];
    let hyper = distribution == Distribution::Hypersphere;

    let true_feats = glass.proj.forward(&t_rows);
    let mut fake_feats = glass.proj.forward(&f_rows);
    let r_t = match (&c_rows, hyper) {
        (Some(c), true) => tch::no_grad(|| {
            let dist_t = row_norm(&(&true_feats - c)).view([-1]);
            let dist_f =
                row_norm(&(&fake_feats - c)).view([-1]).masked_select(&m.view([-1]).lt(0.5));
            Tensor::cat(&[dist_t, dist_f], 0)
                .quantile_scalar(cfg.radius, None, false, "linear")
                .double_value(&[])
        }),
        _ => 0.0,
    };

    let mut g = &true_feats + true_feats.randn_like() * cfg.noise;
    let mut bce = Tensor::zeros([], (Kind::Float, device));
    let (mut ts, mut gs) =
        (Tensor::zeros([1], (Kind::Float, device)), Tensor::zeros([1], (Kind::Float, device)));
    for s in 0..=cfg.ascent_steps {
        let scores = glass.dsc.forward_t(&Tensor::cat(&[&true_feats, &g], 0), true);
        ts = scores.narrow(0, 0, n);
        gs = scores.narrow(0, n, n);
        let l_true = loss::bce_const(&ts, 0.0);
        let l_gaus = loss::bce_const(&gs, 1.0);
        bce = &l_true + &l_gaus;
        if s == cfg.ascent_steps {
            break;
        }
        let grad = Tensor::run_backward(&[&l_gaus], &[&g], false, false).remove(0);
        let gn = row_norm(&grad);
        g = &g + (grad / (gn + 1e-10)) * cfg.ascent_lr;
        if (s + 1) % cfg.truncate_every == 0 {
            g = match (&c_rows, hyper) {
                (Some(c), true) => {
                    let h = &g - c;
                    let hn = row_norm(&h);
                    c + h * hn.clamp(r_t, 2.0 * r_t) / (hn + 1e-10)
                }
                _ => {
                    let h = &g - &true_feats;
                    let hn = row_norm(&h);
                    &true_feats + h * hn.clamp(0.5, 1.0) / (hn + 1e-10)
                }
            };
        }
    }

    if let (Some(c), true) = (&c_rows, hyper) {
        let h = &fake_feats - c;
        let hn = row_norm(&h);
        let pushed = c + h * hn.clamp(2.0 * r_t, 4.0 * r_t) / (hn + 1e-10);
        fake_feats = pushed.where_self(&m.gt(0.5), &fake_feats);
    }
    let sf = glass.dsc.forward_t(&fake_feats, true);
    let dist = (&sf - &m).square();
    let thr = tch::no_grad(|| dist.quantile_scalar(cfg.mining, None, false, "linear"));
    let hard = dist.ge_tensor(&thr);
    let sf_hard = sf.masked_select(&hard).view([-1, 1]);
    let m_hard = m.masked_select(&hard).view([-1, 1]);
    let focal = loss::focal(&sf_hard, &m_hard);
    let total = &bce + &focal;
    opt_p.zero_grad();
    opt_d.zero_grad();
    total.backward();
    opt_p.step();
    opt_d.step();

    tch::no_grad(|| StepStats {
        loss: total.double_value(&[]),
        bce: bce.double_value(&[]),
        focal: focal.double_value(&[]),
        p_true: ts.lt(0.5).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]),
        p_fake: gs.ge(0.5).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]),
    })
}
