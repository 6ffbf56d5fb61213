//! Wide ResNet-50-2 up to `layer3`: GLASS's backbone.
//!
//! Paper: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv 1605.07146); the 50-2 variant is
//! a ResNet-50 whose bottleneck inner width is doubled. Reference: torchvision `models/resnet.py`
//! (`wide_resnet50_2` = `ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=128)`), weights IMAGENET1K_V1
//! (`wide_resnet50_2-95faca4d.pth`). GLASS spec §1.
//!
//! Shapes: `[B, 3, H, W]` (ImageNet mean/std) → stem `[B, 64, H/4, W/4]` → `layer1` `[B, 256, H/4, W/4]`
//! → `layer2` `[B, 512, H/8, W/8]` → `layer3` `[B, 1024, H/16, W/16]`. At 288×288: `[B,512,36,36]` and
//! `[B,1024,18,18]`.
//!
//! GLASS hooks `layer2`/`layer3` and lets the forward run through `layer4` and `fc` for nothing; we stop
//! after `layer3` and do not even create `layer4`/`fc` (24.9 M instead of 68.9 M parameters).
//! Variable names are torchvision's (`conv1.weight`, `layer2.0.downsample.1.running_mean`, ...).
//!
//! Parity with torchvision: `cargo test -p host --test backbone_parity`.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::Backbone;

/// torchvision's BatchNorm2d default.
pub(crate) const BN_EPS: f64 = 1e-5;
/// torchvision `Bottleneck.expansion`: conv3 widens to `planes * 4`.
const EXPANSION: i64 = 4;
/// `width_per_group = 128` against the standard 64: the inner width is `planes * 128 / 64`.
const WIDTH_FACTOR: i64 = 2;

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { eps: BN_EPS, ..Default::default() })
}

/// torchvision's v1.5 Bottleneck with the wide inner width. The stride sits on the 3x3 `conv2` (v1.5), not on
/// `conv1` as in the original ResNet paper; getting this wrong changes every activation.
#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    /// `downsample.0` (1x1 conv, stride) and `downsample.1` (BN): only on the first block of a layer.
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    fn new(p: nn::Path, c_in: i64, planes: i64, stride: i64) -> Self {
        let width = planes * WIDTH_FACTOR;
        let c_out = planes * EXPANSION;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            (conv(&d / "0", c_in, c_out, 1, stride, 0), bn(&d / "1", c_out))
        });
        Bottleneck {
            conv1: conv(&p / "conv1", c_in, width, 1, 1, 0),
            bn1: bn(&p / "bn1", width),
            conv2: conv(&p / "conv2", width, width, 3, stride, 1),
            bn2: bn(&p / "bn2", width),
            conv3: conv(&p / "conv3", width, c_out, 1, 1, 0),
            bn3: bn(&p / "bn3", c_out),
            downsample,
        }
    }

    /// `[B, c_in, H, W]` → `[B, planes*4, H/stride, W/stride]`, eval-mode BN.
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.bn1.forward_t(&x.apply(&self.conv1), false).relu();
        let y = self.bn2.forward_t(&y.apply(&self.conv2), false).relu();
        let y = self.bn3.forward_t(&y.apply(&self.conv3), false);
        let shortcut = match &self.downsample {
            Some((c, b)) => b.forward_t(&x.apply(c), false),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// torchvision `wide_resnet50_2` truncated after `layer3`.
#[derive(Debug)]
pub struct WideResNet50_2 {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layer1: Vec<Bottleneck>,
    layer2: Vec<Bottleneck>,
    layer3: Vec<Bottleneck>,
}

impl WideResNet50_2 {
    /// `(layer2, layer3)` channels.
    pub const CHANNELS: (i64, i64) = (512, 1024);

    /// Creates `conv1`, `bn1` and `layer1..3` under `p` (torchvision names, no `layer4`/`fc`).
    pub fn new(p: nn::Path) -> Self {
        // (blocks, planes, stride) per layer, from ResNet(Bottleneck, [3, 4, 6, 3]).
        let mut c_in = 64;
        let mut layer = |name: &str, blocks: i64, planes: i64, stride: i64| {
            let lp = &p / name;
            let v: Vec<Bottleneck> = (0..blocks)
                .map(|i| {
                    let b = Bottleneck::new(&lp / i, c_in, planes, if i == 0 { stride } else { 1 });
                    c_in = planes * EXPANSION;
                    b
                })
                .collect();
            v
        };
        let layer1 = layer("layer1", 3, 64, 1);
        let layer2 = layer("layer2", 4, 128, 2);
        let layer3 = layer("layer3", 6, 256, 2);
        WideResNet50_2 {
            conv1: conv(&p / "conv1", 3, 64, 7, 2, 3),
            bn1: bn(&p / "bn1", 64),
            layer1,
            layer2,
            layer3,
        }
    }
}

fn run(blocks: &[Bottleneck], x: Tensor) -> Tensor {
    blocks.iter().fold(x, |x, b| b.forward(&x))
}

impl Backbone for WideResNet50_2 {
    /// `[B,3,H,W]` → (`layer2` `[B,512,H/8,W/8]`, `layer3` `[B,1024,H/16,W/16]`).
    fn features(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = self.bn1.forward_t(&x.apply(&self.conv1), false).relu();
        let x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let l2 = run(&self.layer2, run(&self.layer1, x));
        let l3 = run(&self.layer3, l2.shallow_clone());
        (l2, l3)
    }

    fn channels(&self) -> (i64, i64) {
        Self::CHANNELS
    }

    fn name(&self) -> &'static str {
        "wide_resnet50_2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_and_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = WideResNet50_2::new(vs.root());
        let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        // GLASS spec §1: 24.86 M parameters up to layer3.
        assert_eq!(n / 10_000, 2486, "{n}");
        let x = Tensor::zeros([1, 3, 64, 96], (Kind::Float, Device::Cpu));
        let (f8, f16) = tch::no_grad(|| net.features(&x));
        assert_eq!(f8.size(), [1, 512, 8, 12]);
        assert_eq!(f16.size(), [1, 1024, 4, 6]);
    }
}
