//! PatchCore-style memory bank (Roth et al., CVPR 2022, "Towards Total Recall in Industrial Anomaly
//! Detection"), the training-free baseline every GLASS result is compared with (`docs/patchcore.md`).
//!
//! Inference path: image `[B,3,H,W]` -> the same frozen backbone taps and 3x3 aggregation as the GLASS
//! run it is compared with ([`crate::models::glass::aggregator`]) -> patch features `[B,d,H/8,W/8]` ->
//! Euclidean distance of every patch to its nearest neighbour in the memory bank -> patch scores
//! `[B,H/8,W/8]`; image score = max patch score; pixel map = the GLASS post-processing (bilinear
//! upsample + Gaussian blur, `shared::preprocess::glass_postprocess`).
//!
//! The distance is computed as `sqrt(max(0, |f|^2 + min_j(|m_j|^2 - 2 f.m_j)))`, the same expansion
//! the exported graph uses (a 1x1 convolution with weights `-2 m_j` and bias `|m_j|^2`, then
//! ReduceMin), so libtorch and the station round the same way.
//!
//! The bank is a greedy k-center coreset of all training patches (the paper's "approximate greedy
//! coreset": farthest-point selection on a random projection to 128 dims, started from a seeded
//! point). Its default size is set by what a station can afford ([`CoresetSize::Station`]).
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::models::backbone::{self, Backbone, BackboneKind};
use crate::models::glass::{aggregator, GlassConfig};

/// Key of the memory bank in `checkpoint_best.safetensors`.
pub const BANK_KEY: &str = "memory_bank";

/// Floating-point operations of the EfficientNet-Lite0 trunk to stride 16 per stride-8 patch
/// (3.8 GFLOP at 512 px over 64 x 64 patches). The station default keeps the nearest-neighbour search
/// (2 d FLOP per bank entry and patch) within this, so it costs no more per frame than the backbone.
pub const BACKBONE_FLOP_PER_PATCH: f64 = 3.8e9 / 4096.0;

/// Largest bank the station default allows, in bytes at fp32.
pub const STATION_BANK_BYTES: usize = 64 << 20;

/// Dimensions of the random projection the coreset selection measures distances in (the paper's 128).
pub const PROJECTION_DIMS: i64 = 128;

/// How many training patches the memory bank keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum CoresetSize {
    /// Sized for a station: bank <= 64 MB at fp32 and a search of at most the backbone's FLOPs.
    Station,
    /// A fraction of all training patches, in (0, 1].
    Fraction(f64),
    /// This many patches (capped at the number of training patches).
    Count(usize),
    /// Every training patch (no subsampling).
    Full,
}

impl CoresetSize {
    /// Parses the CLI spelling: `station`, `full`, a fraction `0.01`, or a count `3000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "station" => return Ok(CoresetSize::Station),
            "full" => return Ok(CoresetSize::Full),
            _ => {}
        }
        if let Ok(n) = s.parse::<usize>() {
            return if n == 0 {
                Err("--coreset 0: the bank needs at least one patch".into())
            } else {
                Ok(CoresetSize::Count(n))
            };
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(CoresetSize::Fraction(f)),
            _ => Err(format!(
                "--coreset {s:?}: expected station, full, a fraction in (0, 1] or a patch count"
            )),
        }
    }

    /// The bank size for `n` training patches of `d` dims.
    pub fn resolve(self, n: usize, d: i64) -> usize {
        let m = match self {
            CoresetSize::Station => station_bank_size(d),
            CoresetSize::Fraction(f) => (n as f64 * f).ceil() as usize,
            CoresetSize::Count(c) => c,
            CoresetSize::Full => n,
        };
        m.clamp(1, n.max(1))
    }
}

impl std::fmt::Display for CoresetSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoresetSize::Station => f.write_str("station"),
            CoresetSize::Full => f.write_str("full"),
            CoresetSize::Fraction(x) => write!(f, "{x}"),
            CoresetSize::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The station default: the most bank entries whose search costs at most [`BACKBONE_FLOP_PER_PATCH`]
/// and whose fp32 size is at most [`STATION_BANK_BYTES`].
pub fn station_bank_size(d: i64) -> usize {
    let d = d.max(1) as f64;
    let by_flops = (BACKBONE_FLOP_PER_PATCH / (2.0 * d)).floor() as usize;
    let by_bytes = STATION_BANK_BYTES / (4 * d as usize);
    by_flops.min(by_bytes).max(1)
}

/// Resolved settings of a PatchCore run (`config.json` `patchcore`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchCoreConfig {
    /// The GLASS preset whose backbone taps, aggregation and input contract are shared.
    pub preset: String,
    /// Feature extractor.
    pub backbone: BackboneKind,
    /// Square input size in pixels (multiple of 32).
    pub image_size: i64,
    /// Dims each backbone level contributes to the patch feature (stride 8, stride 16).
    pub embed_dims: [i64; 2],
    /// Gaussian sigma of the pixel map, in input pixels.
    pub blur_sigma: f32,
    /// Input normalisation mean (RGB).
    pub mean: [f32; 3],
    /// Input normalisation std (RGB).
    pub std: [f32; 3],
    /// Bank size rule.
    pub coreset: CoresetSize,
    /// Split seed; also seeds the coreset's projection and start point.
    pub seed: u64,
}

impl PatchCoreConfig {
    /// The memory bank on the features of a GLASS preset (same backbone, taps, aggregation, size).
    pub fn from_glass(g: &GlassConfig) -> Self {
        PatchCoreConfig {
            preset: g.preset.clone(),
            backbone: g.backbone,
            image_size: g.image_size,
            embed_dims: g.embed_dims,
            blur_sigma: g.blur_sigma,
            mean: g.mean,
            std: g.std,
            coreset: CoresetSize::Station,
            seed: g.seed,
        }
    }

    /// Total patch-feature dims.
    pub fn embed_dim(&self) -> i64 {
        self.embed_dims[0] + self.embed_dims[1]
    }

    /// Checks that the configuration can run, saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_size <= 0 || self.image_size % 32 != 0 {
            return Err(format!(
                "image size {} must be a positive multiple of 32",
                self.image_size
            ));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err("std must be positive".into());
        }
        if !(self.blur_sigma.is_finite() && self.blur_sigma >= 0.0) {
            return Err(format!("blur sigma {} must be finite and >= 0", self.blur_sigma));
        }
        if let CoresetSize::Fraction(f) = self.coreset {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("coreset fraction {f} must be in (0, 1]"));
            }
        }
        aggregator::check_dims(self.backbone.channels(), self.embed_dims)
    }
}

/// The model: frozen backbone + memory bank `[M, d]`.
pub struct PatchCore {
    /// Resolved configuration.
    pub cfg: PatchCoreConfig,
    /// Frozen feature extractor's variables.
    pub backbone_vs: nn::VarStore,
    backbone: Box<dyn Backbone>,
    /// Memory bank `[M, d]` (empty until set).
    pub bank: Tensor,
    bank_sq: Tensor,
}

impl PatchCore {
    /// Builds the backbone on `device` and loads its weights (frozen); the bank starts empty.
    pub fn new(
        cfg: PatchCoreConfig,
        weights: &std::path::Path,
        device: Device,
    ) -> crate::Result<Self> {
        cfg.validate().map_err(crate::Error::Config)?;
        let mut backbone_vs = nn::VarStore::new(device);
        let backbone = backbone::build(cfg.backbone, backbone_vs.root());
        backbone::load_weights(&mut backbone_vs, weights)?;
        backbone_vs.freeze();
        let d = cfg.embed_dim();
        let bank = Tensor::zeros([0, d], (Kind::Float, device));
        let bank_sq = Tensor::zeros([0], (Kind::Float, device));
        Ok(PatchCore { cfg, backbone_vs, backbone, bank, bank_sq })
    }

    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.backbone_vs.device()
    }

    /// Aggregated patch features `[B, d, h, w]` of a preprocessed batch.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (l2, l3) = self.backbone.features(x);
            aggregator::aggregate(&l2, &l3, self.cfg.embed_dims)
        })
    }

    /// Installs the memory bank `[M, d]`.
    pub fn set_bank(&mut self, bank: Tensor) -> crate::Result<()> {
        let d = self.cfg.embed_dim();
        match bank.size().as_slice() {
            [m, dd] if *m > 0 && *dd == d => {}
            other => {
                return Err(crate::Error::Config(format!(
                    "memory bank has shape {other:?}, expected [M > 0, {d}]"
                )))
            }
        }
        let bank = bank.to_kind(Kind::Float).to_device(self.device());
        self.bank_sq = (&bank * &bank).sum_dim_intlist(1, false, Kind::Float);
        self.bank = bank;
        Ok(())
    }

    /// Patch scores `[B, h, w]` (nearest-neighbour distance) of aggregated features `[B, d, h, w]`.
    pub fn score_features(&self, feat: &Tensor) -> Tensor {
        let (b, _, h, w) = feat.size4().expect("4-D features (invariant of embed)");
        tch::no_grad(|| nn_distance(&rows(feat), &self.bank, &self.bank_sq).view([b, h, w]))
    }

    /// Patch scores `[B, h, w]` of a preprocessed image batch.
    pub fn patch_scores(&self, x: &Tensor) -> Tensor {
        self.score_features(&self.embed(x))
    }

    /// Saves the bank (`memory_bank`) into a safetensors file.
    pub fn save(&self, file: &std::path::Path) -> crate::Result<()> {
        let bank = self.bank.to_device(Device::Cpu);
        Tensor::write_safetensors(&[(BANK_KEY, &bank)], file).map_err(crate::Error::Torch)
    }

    /// Loads the bank from a file written by [`PatchCore::save`].
    pub fn load(&mut self, file: &std::path::Path) -> crate::Result<()> {
        if !file.is_file() {
            return Err(crate::Error::io(
                file,
                std::io::Error::new(std::io::ErrorKind::NotFound, "memory bank file not found"),
            ));
        }
        let named = Tensor::read_safetensors(file)?;
        let bank =
            named.into_iter().find(|(k, _)| k == BANK_KEY).map(|(_, t)| t).ok_or_else(|| {
                crate::Error::Config(format!("{}: no `{BANK_KEY}` tensor", file.display()))
            })?;
        self.set_bank(bank)
    }
}

/// Bank entries per distance block (host and exported graph).
pub const BANK_CHUNK: i64 = 1024;

/// Distance of every row `[N, d]` to its nearest bank entry (`bank [M, d]`, `bank_sq [M]` its squared
/// norms), in the expansion the exported graph uses, bank blocks of [`BANK_CHUNK`].
pub fn nn_distance(rows: &Tensor, bank: &Tensor, bank_sq: &Tensor) -> Tensor {
    let f_sq = (rows * rows).sum_dim_intlist(1, false, Kind::Float); // [N]
    let m = bank.size()[0];
    let mut best: Option<Tensor> = None;
    let mut start = 0;
    while start < m {
        let len = BANK_CHUNK.min(m - start);
        let part = bank.narrow(0, start, len);
        let sq = bank_sq.narrow(0, start, len);
        let partial = (rows.matmul(&part.tr()) * -2.0 + sq.unsqueeze(0)).amin([1], false);
        best = Some(match best {
            None => partial,
            Some(b) => b.minimum(&partial),
        });
        start += len;
    }
    let best = best.unwrap_or_else(|| Tensor::zeros_like(&f_sq));
    (best + f_sq).clamp_min(0.0).sqrt()
}

/// Greedy k-center coreset of `rows` `[N, d]` (CPU): indices of `m` rows, each the farthest from
/// those chosen before, distances measured after a seeded Gaussian projection to
/// [`PROJECTION_DIMS`] dims (none when `d` is already that small). The first row is drawn with the
/// seed. Returns the indices in selection order.
pub fn greedy_coreset(rows: &Tensor, m: usize, seed: u64, mut tick: impl FnMut()) -> Vec<i64> {
    let (n, d) = rows.size2().expect("2-D rows");
    if m as i64 >= n {
        return (0..n).collect();
    }
    tch::no_grad(|| {
        let gen_seed = seed.wrapping_mul(0x9E37_79B9).wrapping_add(17) as i64;
        tch::manual_seed(gen_seed);
        let x = if d > PROJECTION_DIMS {
            let p = Tensor::randn([d, PROJECTION_DIMS], (Kind::Float, rows.device()))
                / (PROJECTION_DIMS as f64).sqrt();
            rows.matmul(&p)
        } else {
            rows.shallow_clone()
        };
        let x_sq = (&x * &x).sum_dim_intlist(1, false, Kind::Float);
        let first = Tensor::randint(n, [1], (Kind::Int64, rows.device())).int64_value(&[0]);
        let mut chosen = Vec::with_capacity(m);
        chosen.push(first);
        let c = x.get(first);
        let mut min_d = &x_sq - x.mv(&c) * 2.0 + (&c * &c).sum(Kind::Float);
        tick();
        while chosen.len() < m {
            let next = min_d.argmax(0, false).int64_value(&[]);
            chosen.push(next);
            let c = x.get(next);
            let dist = &x_sq - x.mv(&c) * 2.0 + (&c * &c).sum(Kind::Float);
            min_d = min_d.minimum(&dist);
            tick();
        }
        chosen
    })
}

/// Features `[B, d, h, w]` -> rows `[B*h*w, d]`.
pub fn rows(feat: &Tensor) -> Tensor {
    let d = feat.size()[1];
    feat.permute([0, 2, 3, 1]).reshape([-1, d])
}

/// Maps a distance map to [0, 1] with the run's `map_range`.
pub fn normalise_map(map: &mut [f32], range: [f32; 2]) {
    let span = (range[1] - range[0]).max(f32::EPSILON);
    for v in map {
        *v = ((*v - range[0]) / span).clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coreset_sizes_parse_and_resolve() {
        assert_eq!(CoresetSize::parse("station").unwrap(), CoresetSize::Station);
        assert_eq!(CoresetSize::parse("full").unwrap(), CoresetSize::Full);
        assert_eq!(CoresetSize::parse("0.1").unwrap(), CoresetSize::Fraction(0.1));
        assert_eq!(CoresetSize::parse("3000").unwrap(), CoresetSize::Count(3000));
        assert!(CoresetSize::parse("0").is_err());
        assert!(CoresetSize::parse("1.5").is_err());
        assert!(CoresetSize::parse("many").is_err());
        // Lite0 edge features (152 dims): the FLOP budget binds (3.8e9/4096/(2*152) = 3051 entries,
        // 1.85 MB), far below the 64 MB cap.
        assert_eq!(station_bank_size(152), 3051);
        assert_eq!(CoresetSize::Fraction(0.5).resolve(10, 152), 5);
        assert_eq!(CoresetSize::Count(50).resolve(10, 152), 10);
        assert_eq!(CoresetSize::Full.resolve(10, 152), 10);
    }

    #[test]
    fn coreset_is_farthest_point_and_covers_clusters() {
        // Three tight clusters: a 3-point coreset must take one point of each.
        let mut v = Vec::new();
        for c in [0.0f32, 10.0, 20.0] {
            for k in 0..5 {
                v.extend([c + 0.01 * k as f32, -c]);
            }
        }
        let rows = Tensor::from_slice(&v).view([15, 2]);
        let idx = greedy_coreset(&rows, 3, 0, || {});
        let mut clusters: Vec<i64> = idx.iter().map(|i| i / 5).collect();
        clusters.sort();
        assert_eq!(clusters, vec![0, 1, 2], "indices {idx:?}");
        assert_eq!(greedy_coreset(&rows, 20, 0, || {}).len(), 15);
    }

    #[test]
    fn distances_equal_brute_force_over_several_bank_blocks() {
        tch::manual_seed(3);
        let bank = Tensor::randn([2 * BANK_CHUNK + 77, 6], (Kind::Float, Device::Cpu));
        let bank_sq = (&bank * &bank).sum_dim_intlist(1, false, Kind::Float);
        let q = Tensor::randn([40, 6], (Kind::Float, Device::Cpu));
        let ours = nn_distance(&q, &bank, &bank_sq);
        let want = q.unsqueeze(1).f_sub(&bank.unsqueeze(0)).unwrap().square().sum_dim_intlist(
            2,
            false,
            Kind::Float,
        );
        let want = want.amin([1], false).sqrt();
        let err = (&ours - &want).abs().max().double_value(&[]);
        assert!(err < 1e-4, "max abs err {err}");
        // A query equal to a bank entry is at distance ~0.
        let d = nn_distance(&bank.narrow(0, 1500, 1), &bank, &bank_sq).double_value(&[0]);
        assert!(d < 1e-2, "{d}");
    }
}
