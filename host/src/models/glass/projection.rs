//! GLASS feature adaptor ("pre_projection"): one `Linear(d -> d)` with bias and no activation.
//!
//! Reference: cqylunlun/GLASS `model.py::Projection` with `pre_proj=1` (docs/glass.md §2). Variable names
//! follow its state_dict (`layers.0fc.weight`, `layers.0fc.bias`) under the VarStore root `pre_projection`.
//! Shapes: `[N, d] -> [N, d]`.
use tch::nn::{self, Module};
use tch::Tensor;

use super::init::{torch_default_bias, xavier_normal};

/// The projection layer.
#[derive(Debug)]
pub struct Projection {
    fc: nn::Linear,
}

impl Projection {
    /// Creates the layer under `p` with GLASS's initialisation (xavier-normal weight, PyTorch default bias).
    pub fn new(p: nn::Path, dim: i64) -> Self {
        let cfg = nn::LinearConfig {
            ws_init: xavier_normal(dim, dim),
            bs_init: Some(torch_default_bias(dim)),
            bias: true,
        };
        Projection { fc: nn::linear(p / "layers" / "0fc", dim, dim, cfg) }
    }
}

impl Module for Projection {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc.forward(xs)
    }
}
