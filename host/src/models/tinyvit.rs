//! TinyViT-21M-512 (Wu et al., "TinyViT: Fast Pretraining Distillation for Small Vision Transformers",
//! ECCV 2022), the experiment protocol's classifier, in tch with timm's `tiny_vit_21m_512` state_dict
//! names so that a timm safetensors checkpoint (`tiny_vit_21m_512.dist_in22k_ft_in1k`) loads as is.
//! Reference: timm `timm/models/tiny_vit.py`, described in `docs/tinyvit.md`.
//!
//! Shapes at 512 px: stem (two 3x3/2 ConvNorms) `[B,96,128,128]` → stage 0 (2 MBConv) → stage 1
//! (PatchMerging → `[B,192,64,64]`, 2 blocks, 16x16 windows) → stage 2 (`[B,384,32,32]`, 6 blocks, one 32x32
//! window) → stage 3 (`[B,576,16,16]`, 2 blocks) → mean over H,W → LayerNorm → `fc` (2 logits here).
//!
//! Layout details that matter for parity: the qkv projection is laid out **per head**
//! (`[q_h | k_h | v_h]` for head h, 32 dims each), the attention bias is indexed by the absolute offset
//! `|dy|·ws + |dx|`, windows are padded without a mask, the local 3x3 depthwise ConvNorm has no residual,
//! and every GELU is the exact erf form. BatchNorm always runs on its running statistics (frozen), as
//! Cream fine-tunes with `EVAL_BN_WHEN_TRAINING`; drop path is active only when `train` is true.
//!
//! Variables are assigned to learning-rate groups for layer-wise LR decay (Cream `set_layer_lr_decay`):
//! group `g` gets `lr · decay^g`; the head is group 0, block `i` of 12 (MBConv blocks included) is group
//! `11 − i`, the stem is group 11 and each PatchMerging shares the group of the block before it.
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Stage widths.
pub const EMBED_DIMS: [i64; 4] = [96, 192, 384, 576];
/// Blocks per stage (stage 0: MBConv).
pub const DEPTHS: [usize; 4] = [2, 2, 6, 2];
/// Attention heads per stage (head dim 32 everywhere; stage 0 has none).
pub const NUM_HEADS: [i64; 4] = [3, 6, 12, 18];
/// Attention windows of the 512 model per stage (stage 0 unused).
pub const WINDOW_SIZES: [i64; 4] = [16, 16, 32, 16];
/// Drop-path rate of the last block (linear from 0 over the 12 blocks).
pub const DROP_PATH_RATE: f64 = 0.1;
const BN_EPS: f64 = 1e-5;
const LN_EPS: f64 = 1e-5;
const HEAD_DIM: i64 = 32;
/// Number of blocks, MBConv included (the layer-decay depth).
pub const TOTAL_BLOCKS: usize = 12;

/// The activation TinyViT uses everywhere: exact GELU.
fn gelu(x: &Tensor) -> Tensor {
    x.gelu("none")
}

/// Stochastic depth: per sample, drop the residual branch with probability `p` (scale the rest).
fn drop_path(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - p;
    let mut shape = vec![x.size()[0]];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    let mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    x * mask / keep
}

/// `Conv2d(bias=False)` + `BatchNorm2d`, no activation (timm `ConvNorm`, Cream `Conv2d_BN`).
#[derive(Debug)]
pub struct ConvNorm {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvNorm {
    fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride,
            padding: (k - 1) / 2,
            groups,
            bias: false,
            ..Default::default()
        };
        let conv = nn::conv2d(&p / "conv", c_in, c_out, k, cfg);
        let bn = nn::batch_norm2d(
            &p / "bn",
            c_out,
            nn::BatchNormConfig { eps: BN_EPS, ..Default::default() },
        );
        ConvNorm { conv, bn }
    }

    /// Frozen BN: always the running statistics.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        nn::ModuleT::forward_t(&self.bn, &self.conv.forward(x), false)
    }
}

#[derive(Debug)]
struct MbConv {
    conv1: ConvNorm,
    conv2: ConvNorm,
    conv3: ConvNorm,
    drop: f64,
}

impl MbConv {
    fn new(p: nn::Path, c: i64, drop: f64) -> Self {
        let mid = c * 4;
        MbConv {
            conv1: ConvNorm::new(&p / "conv1", c, mid, 1, 1, 1),
            conv2: ConvNorm::new(&p / "conv2", mid, mid, 3, 1, mid),
            conv3: ConvNorm::new(&p / "conv3", mid, c, 1, 1, 1),
            drop,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = gelu(&self.conv1.forward(x));
        let y = gelu(&self.conv2.forward(&y));
        let y = self.conv3.forward(&y);
        gelu(&(drop_path(&y, self.drop, train) + x))
    }
}

/// 1x1 → GELU → 3x3/2 depthwise → GELU → 1x1, no residual (timm `PatchMerging`).
#[derive(Debug)]
struct PatchMerging {
    conv1: ConvNorm,
    conv2: ConvNorm,
    conv3: ConvNorm,
}

impl PatchMerging {
    fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        PatchMerging {
            conv1: ConvNorm::new(&p / "conv1", c_in, c_out, 1, 1, 1),
            conv2: ConvNorm::new(&p / "conv2", c_out, c_out, 3, 2, c_out),
            conv3: ConvNorm::new(&p / "conv3", c_out, c_out, 1, 1, 1),
        }
    }

    /// `[B,C,H,W]` → `[B,C',H/2,W/2]`, returning the conv3 output (a Grad-CAM target) too.
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = gelu(&self.conv1.forward(x));
        let y = gelu(&self.conv2.forward(&y));
        self.conv3.forward(&y)
    }
}

/// `|dy|·ws + |dx|` for every token pair of a `ws x ws` window, row-major: `[ws², ws²]` flattened.
pub fn attention_bias_index(ws: i64) -> Vec<i64> {
    let n = ws * ws;
    let mut idx = Vec::with_capacity((n * n) as usize);
    for p1 in 0..n {
        let (y1, x1) = (p1 / ws, p1 % ws);
        for p2 in 0..n {
            let (y2, x2) = (p2 / ws, p2 % ws);
            idx.push((y1 - y2).abs() * ws + (x1 - x2).abs());
        }
    }
    idx
}

#[derive(Debug)]
struct Attention {
    norm: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    biases: Tensor,
    idx: Tensor,
    heads: i64,
    ws: i64,
}

impl Attention {
    fn new(p: nn::Path, dim: i64, heads: i64, ws: i64) -> Self {
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        let biases = p.zeros("attention_biases", &[heads, ws * ws]);
        let idx = Tensor::from_slice(&attention_bias_index(ws)).to_device(p.device());
        Attention {
            norm: nn::layer_norm(&p / "norm", vec![dim], ln),
            qkv: nn::linear(&p / "qkv", dim, 3 * dim, Default::default()),
            proj: nn::linear(&p / "proj", dim, dim, Default::default()),
            biases,
            idx,
            heads,
            ws,
        }
    }

    /// Tokens `[B', N, C]` (N = ws², one window each) → `[B', N, C]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("[B', N, C] window tokens");
        let x = self.norm.forward(x);
        let qkv = self.qkv.forward(&x).view([b, n, self.heads, 3 * HEAD_DIM]);
        let parts = qkv.split(HEAD_DIM, -1);
        let (q, k, v) = (
            parts[0].permute([0, 2, 1, 3]),
            parts[1].permute([0, 2, 1, 3]),
            parts[2].permute([0, 2, 1, 3]),
        );
        let nn_ = self.ws * self.ws;
        let bias = self.biases.index_select(1, &self.idx).view([self.heads, nn_, nn_]);
        let scale = (HEAD_DIM as f64).powf(-0.5);
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(bias.to_kind(q.kind())),
            0.0,
            false,
            scale,
            false,
        );
        self.proj.forward(&out.transpose(1, 2).reshape([b, n, c]))
    }
}

#[derive(Debug)]
struct Mlp {
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    fn new(p: nn::Path, dim: i64) -> Self {
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        Mlp {
            norm: nn::layer_norm(&p / "norm", vec![dim], ln),
            fc1: nn::linear(&p / "fc1", dim, 4 * dim, Default::default()),
            fc2: nn::linear(&p / "fc2", 4 * dim, dim, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&gelu(&self.fc1.forward(&self.norm.forward(x))))
    }
}

#[derive(Debug)]
struct Block {
    attn: Attention,
    local_conv: ConvNorm,
    mlp: Mlp,
    ws: i64,
    drop: f64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, heads: i64, ws: i64, drop: f64) -> Self {
        Block {
            attn: Attention::new(&p / "attn", dim, heads, ws),
            local_conv: ConvNorm::new(&p / "local_conv", dim, dim, 3, 1, dim),
            mlp: Mlp::new(&p / "mlp", dim),
            ws,
            drop,
        }
    }

    /// `[B,H,W,C]` → (`[B,H,W,C]`, the local conv's output `[B,C,H,W]`, a Grad-CAM target).
    fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let (b, h, w, c) = x.size4().expect("[B,H,W,C] tokens");
        let ws = self.ws;
        let attn = if h == ws && w == ws {
            self.attn.forward(&x.reshape([b, h * w, c])).view([b, h, w, c])
        } else {
            // Pad bottom/right to multiples of ws (no mask: padded tokens attend, as upstream).
            let (pb, pr) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
            let xp = if pb > 0 || pr > 0 {
                x.constant_pad_nd([0, 0, 0, pr, 0, pb])
            } else {
                x.shallow_clone()
            };
            let (ph, pw) = (h + pb, w + pr);
            let (nh, nw) = (ph / ws, pw / ws);
            let win =
                xp.view([b, nh, ws, nw, ws, c]).transpose(2, 3).reshape([b * nh * nw, ws * ws, c]);
            let y = self.attn.forward(&win);
            let y = y.view([b, nh, nw, ws, ws, c]).transpose(2, 3).reshape([b, ph, pw, c]);
            if pb > 0 || pr > 0 {
                y.narrow(1, 0, h).narrow(2, 0, w)
            } else {
                y
            }
        };
        let x = x + drop_path(&attn, self.drop, train);
        // Local depthwise conv on the image layout; no residual, no activation.
        let lc = self.local_conv.forward(&x.permute([0, 3, 1, 2]));
        let x = lc.permute([0, 2, 3, 1]);
        let y = self.mlp.forward(&x);
        (&x + drop_path(&y, self.drop, train), lc)
    }
}

#[derive(Debug)]
struct Stage {
    downsample: Option<PatchMerging>,
    mbconv: Vec<MbConv>,
    blocks: Vec<Block>,
}

/// Where a Grad-CAM activation can be taken (all `[B,C,h,w]`).
pub const CAM_LAYERS: [&str; 5] = [
    "stages.3",
    "stages.3.blocks.1.local_conv",
    "stages.3.downsample.conv3",
    "stages.2",
    "stages.1",
];

/// TinyViT-21M-512 with a `num_classes` head.
#[derive(Debug)]
pub struct TinyVit {
    stem1: ConvNorm,
    stem2: ConvNorm,
    stages: Vec<Stage>,
    head_norm: nn::LayerNorm,
    head_fc: nn::Linear,
}

/// Drop-path rate of global block `i` (of [`TOTAL_BLOCKS`]).
fn drop_rate(i: usize) -> f64 {
    DROP_PATH_RATE * i as f64 / (TOTAL_BLOCKS - 1) as f64
}

impl TinyVit {
    /// Builds the model under `p` (names as timm's state_dict), with layer-decay groups (module docs).
    pub fn new(p: &nn::Path, num_classes: i64) -> Self {
        let last = TOTAL_BLOCKS - 1;
        let pe = p.set_group(last) / "patch_embed";
        let stem1 = ConvNorm::new(&pe / "conv1", 3, EMBED_DIMS[0] / 2, 3, 2, 1);
        let stem2 = ConvNorm::new(&pe / "conv2", EMBED_DIMS[0] / 2, EMBED_DIMS[0], 3, 2, 1);
        let mut stages = Vec::new();
        let mut gi = 0usize; // global block index
        for s in 0..4 {
            let sp = p / "stages" / s;
            let dim = EMBED_DIMS[s];
            let downsample = (s > 0).then(|| {
                // Shares the group of the block before it.
                let g = last - (gi - 1);
                PatchMerging::new(sp.set_group(g) / "downsample", EMBED_DIMS[s - 1], dim)
            });
            let mut mbconv = Vec::new();
            let mut blocks = Vec::new();
            for bi in 0..DEPTHS[s] {
                let bp = sp.set_group(last - gi) / "blocks" / bi;
                if s == 0 {
                    mbconv.push(MbConv::new(bp, dim, drop_rate(gi)));
                } else {
                    blocks.push(Block::new(bp, dim, NUM_HEADS[s], WINDOW_SIZES[s], drop_rate(gi)));
                }
                gi += 1;
            }
            stages.push(Stage { downsample, mbconv, blocks });
        }
        let hp = p.set_group(0) / "head";
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        let head_norm = nn::layer_norm(&hp / "norm", vec![EMBED_DIMS[3]], ln);
        let head_fc = nn::linear(&hp / "fc", EMBED_DIMS[3], num_classes, Default::default());
        TinyVit { stem1, stem2, stages, head_norm, head_fc }
    }

    /// Number of layer-decay groups (group g gets `decay^g`).
    pub const GROUPS: usize = TOTAL_BLOCKS;

    /// Logits `[B, classes]`, plus the activation of `cam_layer` (one of [`CAM_LAYERS`]) as `[B,C,h,w]`.
    pub fn forward_cam(
        &self,
        x: &Tensor,
        train: bool,
        cam_layer: Option<&str>,
    ) -> (Tensor, Option<Tensor>) {
        let mut cam = None;
        let mut keep = |name: &str, t: &Tensor| {
            if cam_layer == Some(name) {
                cam = Some(t.shallow_clone());
            }
        };
        let mut x = self.stem2.forward(&gelu(&self.stem1.forward(x)));
        for (s, st) in self.stages.iter().enumerate() {
            if let Some(ds) = &st.downsample {
                x = ds.forward(&x);
                keep(&format!("stages.{s}.downsample.conv3"), &x);
            }
            for b in &st.mbconv {
                x = b.forward(&x, train);
            }
            if !st.blocks.is_empty() {
                let mut t = x.permute([0, 2, 3, 1]);
                for (bi, b) in st.blocks.iter().enumerate() {
                    let (out, lc) = b.forward(&t, train);
                    keep(&format!("stages.{s}.blocks.{bi}.local_conv"), &lc);
                    t = out;
                }
                x = t.permute([0, 3, 1, 2]);
            }
            keep(&format!("stages.{s}"), &x);
        }
        let pooled = x.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let logits = self.head_fc.forward(&self.head_norm.forward(&pooled));
        (logits, cam)
    }
}
