//! Patch aggregation (GLASS `PatchMaker` + `MeanMapper` + `Aggregator`), docs/glass.md §1.
//!
//! For each backbone level the 3x3 neighbourhood of every location is unfolded (zero padding, PyTorch
//! im2col order: channel-major, then kernel row, then kernel column) and averaged over consecutive groups
//! of `C*9/d` entries, giving `d` dims per location. The paper's MeanMapper (pool each level to 1536) and
//! Aggregator (pool the 3072 concatenation to 1536) reduce, because every division is exact, to exactly
//! this with `d = 768` per level. The stride-16 level is pooled *before* it is upsampled to the stride-8
//! grid (bilinear, align_corners=False): pooling and per-channel bilinear resizing are both linear, so the
//! result is identical and needs ~12x less memory at 512 px.
//!
//! Shapes: l2 `[B, C2, h, w]`, l3 `[B, C3, h/2, w/2]` -> `[B, d2 + d3, h, w]` (channel-first patch grid).
use tch::Tensor;

/// Mean of consecutive groups of the 3x3-unfolded vector of every location: `[B,C,h,w] -> [B,d,h,w]`.
///
/// Requires `C*9 % d == 0`; the caller validates the configuration.
pub fn unfold_group_mean(x: &Tensor, d: i64) -> Tensor {
    let (b, c, h, w) = x.size4().expect("feature map is 4-D (invariant of Backbone::features)");
    let g = c * 9 / d;
    if g == 9 {
        // Groups are exactly one channel's 3x3 window: a 3x3 average pool with zero padding counted.
        return x.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
    }
    let cols = x.im2col([3, 3], [1, 1], [1, 1], [1, 1]); // [B, C*9, h*w]
    cols.view([b, d, g, h * w]).mean_dim(2, false, cols.kind()).view([b, d, h, w])
}

/// The aggregated patch features of two backbone levels on the stride-8 grid.
pub fn aggregate(l2: &Tensor, l3: &Tensor, dims: [i64; 2]) -> Tensor {
    let a = unfold_group_mean(l2, dims[0]);
    let b = unfold_group_mean(l3, dims[1]);
    let (_, _, h, w) = a.size4().expect("4-D (invariant)");
    let b = b.upsample_bilinear2d([h, w], false, None, None);
    Tensor::cat(&[a, b], 1)
}

/// Checks that `C*9` is divisible by the requested dims for each level, naming the level that is not.
pub fn check_dims(channels: (i64, i64), dims: [i64; 2]) -> Result<(), String> {
    for (level, (c, d)) in [(8, (channels.0, dims[0])), (16, (channels.1, dims[1]))] {
        if d <= 0 || (c * 9) % d != 0 {
            return Err(format!(
                "embed dims {d} for the stride-{level} level must divide {c}x9 = {} (its 3x3 unfold)",
                c * 9
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The paper's path, literally: unfold, adaptive_avg_pool1d to 1536 per level, stack, pool to 1536.
    fn reference(l2: &Tensor, l3: &Tensor, pre: i64, target: i64) -> Tensor {
        let (b, _, h, w) = l2.size4().unwrap();
        let unf = |x: &Tensor| x.im2col([3, 3], [1, 1], [1, 1], [1, 1]);
        let u2 = unf(l2); // [B, C2*9, h*w]
        let (_, c3, h3, w3) = l3.size4().unwrap();
        let u3 = unf(l3).view([b, c3 * 9, h3, w3]).upsample_bilinear2d([h, w], false, None, None);
        let u3 = u3.view([b, c3 * 9, h * w]);
        let rows = |u: &Tensor| u.permute([0, 2, 1]).reshape([-1, 1, u.size()[1]]);
        let p2 = rows(&u2).adaptive_avg_pool1d([pre]);
        let p3 = rows(&u3).adaptive_avg_pool1d([pre]);
        let stacked = Tensor::cat(&[p2, p3], 1).reshape([-1, 1, 2 * pre]);
        stacked.adaptive_avg_pool1d([target]).view([b, h * w, target])
    }

    #[test]
    fn equals_the_papers_unfold_pool_path() {
        tch::manual_seed(0);
        let l2 = Tensor::randn([2, 8, 6, 4], (Kind::Float, Device::Cpu));
        let l3 = Tensor::randn([2, 16, 3, 2], (Kind::Float, Device::Cpu));
        // pre 24 per level, target 24: l2 8*9=72 -> 24 (groups of 3), l3 144 -> 24 (groups of 6), then
        // pairs -> 12 + 12, i.e. dims [12, 12].
        let ours = aggregate(&l2, &l3, [12, 12]); // [2, 24, 6, 4]
        let ours = ours.permute([0, 2, 3, 1]).reshape([2, 24, 24]);
        let want = reference(&l2, &l3, 24, 24);
        let err = (&ours - &want).abs().max().double_value(&[]);
        assert!(err < 1e-6, "max abs err {err}");
    }

    #[test]
    fn group_of_nine_is_a_zero_padded_average_pool() {
        tch::manual_seed(1);
        let x = Tensor::randn([1, 4, 5, 5], (Kind::Float, Device::Cpu));
        let cols = x.im2col([3, 3], [1, 1], [1, 1], [1, 1]).view([1, 4, 9, 25]).mean_dim(
            2,
            false,
            Kind::Float,
        );
        let pooled = unfold_group_mean(&x, 4).view([1, 4, 25]);
        assert!((cols - pooled).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn rejects_indivisible_dims() {
        assert!(check_dims((512, 1024), [768, 768]).is_ok());
        assert!(check_dims((40, 112), [40, 112]).is_ok());
        let e = check_dims((40, 112), [40, 100]).unwrap_err();
        assert!(e.contains("stride-16"), "{e}");
    }
}
