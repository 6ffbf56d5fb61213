//! GLASS discriminator: per-patch anomaly probability.
//!
//! Reference: cqylunlun/GLASS `model.py::Discriminator` with `dsc_layers=2` (docs/glass.md §2):
//! `Linear(d -> hidden, bias) -> BatchNorm1d(hidden) -> LeakyReLU(0.2) -> Linear(hidden -> 1, no bias) ->
//! Sigmoid`. Names: `body.block1.0` (linear), `body.block1.1` (BN), `tail.0` (linear) under the VarStore
//! root `discriminator`. Shapes: `[N, d] -> [N, 1]`, values in (0, 1), 1 = anomalous.
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::init::{torch_default_bias, xavier_normal};

/// The discriminator.
#[derive(Debug)]
pub struct Discriminator {
    fc: nn::Linear,
    bn: nn::BatchNorm,
    tail: nn::Linear,
}

impl Discriminator {
    /// Creates it under `p` with GLASS's initialisation (BN weight 1, bias 0).
    pub fn new(p: nn::Path, dim: i64, hidden: i64) -> Self {
        let body = &p / "body" / "block1";
        let fc = nn::linear(
            &body / "0",
            dim,
            hidden,
            nn::LinearConfig {
                ws_init: xavier_normal(dim, hidden),
                bs_init: Some(torch_default_bias(dim)),
                bias: true,
            },
        );
        let bn = nn::batch_norm1d(
            &body / "1",
            hidden,
            nn::BatchNormConfig { eps: 1e-5, momentum: 0.1, ..Default::default() },
        );
        let tail = nn::linear(
            &p / "tail" / "0",
            hidden,
            1,
            nn::LinearConfig { ws_init: xavier_normal(hidden, 1), bs_init: None, bias: false },
        );
        Discriminator { fc, bn, tail }
    }

    /// The logit before the sigmoid (used by the ONNX export and for numerically careful losses).
    pub fn logits_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.bn.forward_t(&self.fc.forward(xs), train);
        // LeakyReLU(0.2): tch's `leaky_relu` has PyTorch's default slope 0.01.
        let h = h.maximum(&(&h * 0.2));
        self.tail.forward(&h)
    }
}

impl ModuleT for Discriminator {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.logits_t(xs, train).sigmoid()
    }
}
