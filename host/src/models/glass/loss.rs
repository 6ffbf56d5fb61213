//! GLASS losses (docs/glass.md §3b/§3c): BCE (`nn.BCELoss`, mean, log clamped at -100) and the focal loss
//! (γ = 2, α = None, label smoothing 1e-5) used on the hard-mined LAS rows.
use tch::{Kind, Reduction, Tensor};

/// Mean binary cross-entropy of probabilities `p` against a constant `target` (0 or 1).
pub fn bce_const(p: &Tensor, target: f64) -> Tensor {
    let t = p.full_like(target);
    p.binary_cross_entropy::<Tensor>(&t, None, Reduction::Mean)
}

/// GLASS's `FocalLoss(gamma=2)` on two-class inputs `[1 - s, s]` with labels `m` (0/1), both `[N, 1]`.
///
/// one-hot clamped to [1e-5, 1 - 1e-5]; pt = Σ onehot · probs + 1e-5; loss = mean(-(1 - pt)² · log pt).
pub fn focal(s: &Tensor, m: &Tensor) -> Tensor {
    let smooth = 1e-5;
    let probs = Tensor::cat(&[1.0 - s, s.shallow_clone()], 1); // [N, 2]
    let m = m.to_kind(Kind::Float);
    let onehot = Tensor::cat(&[1.0 - &m, m.shallow_clone()], 1).clamp(smooth, 1.0 - smooth);
    let pt = (&onehot * &probs).sum_dim_intlist(1, false, Kind::Float) + smooth;
    let logpt = pt.log();
    let w: Tensor = (1.0f64 - &pt).square();
    (-(w * logpt)).mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_matches_closed_form() {
        let p = Tensor::from_slice(&[0.2f32, 0.9]);
        let l = bce_const(&p, 1.0).double_value(&[]);
        let want = -((0.2f64).ln() + (0.9f64).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    }

    #[test]
    fn focal_is_small_for_confident_correct_and_large_for_wrong() {
        let s = Tensor::from_slice(&[0.99f32, 0.01]).view([2, 1]);
        let m = Tensor::from_slice(&[1.0f32, 0.0]).view([2, 1]);
        let good = focal(&s, &m).double_value(&[]);
        let bad = focal(&s, &(1.0 - &m)).double_value(&[]);
        assert!(good < 1e-5 && bad > 1.0, "good {good} bad {bad}");
        // One hand-computed value: s = 0.3, label 1 -> pt = 0.3 (1-1e-5) + 0.7e-5 + 1e-5.
        let s = Tensor::from_slice(&[0.3f32]).view([1, 1]);
        let m = Tensor::from_slice(&[1.0f32]).view([1, 1]);
        let pt = 0.3 * (1.0 - 1e-5) + 0.7 * 1e-5 + 1e-5;
        let want = -(1.0f64 - pt).powi(2) * pt.ln();
        assert!((focal(&s, &m).double_value(&[]) - want).abs() < 1e-5);
    }
}
