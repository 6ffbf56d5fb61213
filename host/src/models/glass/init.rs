//! GLASS's `init_weight` for linear layers: xavier-normal weights (gain 1) and PyTorch's default bias
//! init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (docs/glass.md §2).
use tch::nn::Init;

/// Xavier-normal: std = sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal(fan_in: i64, fan_out: i64) -> Init {
    Init::Randn { mean: 0.0, stdev: (2.0 / (fan_in + fan_out) as f64).sqrt() }
}

/// PyTorch's default Linear bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn torch_default_bias(fan_in: i64) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}
