//! `shared::preprocess` against PIL/torchvision and torch/scipy references.
//!
//! Fixtures: `shared/tests/fixtures/preprocess_*`, made by `scripts/fixtures/make_preprocess_golden.py`
//! (run it with the project venv to regenerate). The images are stored as raw bytes, so no image
//! decoder is needed here.
#![cfg(feature = "std")]

use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shared::preprocess::{
    gaussian_blur, glass_postprocess, preprocess, upsample_bilinear, ImageView, PreprocessConfig,
    Preprocessor, ResizeMode,
};

type TestResult = Result<(), Box<dyn Error>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn read(name: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let path = fixtures().join(name);
    fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()).into())
}

struct Golden {
    index: Value,
    floats: Vec<f32>,
    images: HashMap<String, (Vec<u8>, usize, usize, usize)>,
}

impl Golden {
    fn load() -> Result<Golden, Box<dyn Error>> {
        let index: Value = serde_json::from_slice(&read("preprocess_golden.json")?)?;
        let floats = read("preprocess_golden.bin")?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut images = HashMap::new();
        for (name, img) in index["images"].as_object().ok_or("images")? {
            let data = read(img["file"].as_str().ok_or("file")?)?;
            let (w, h, c) = (uint(&img["width"])?, uint(&img["height"])?, uint(&img["channels"])?);
            assert_eq!(data.len(), w * h * c, "{name}");
            images.insert(name.clone(), (data, w, h, c));
        }
        Ok(Golden { index, floats, images })
    }

    fn slice(&self, offset: &Value, len: &Value) -> Result<&[f32], Box<dyn Error>> {
        let (o, n) = (uint(offset)?, uint(len)?);
        self.floats.get(o..o + n).ok_or_else(|| "golden offset out of range".into())
    }
}

fn uint(v: &Value) -> Result<usize, Box<dyn Error>> {
    Ok(v.as_u64().ok_or_else(|| format!("not an integer: {v}"))? as usize)
}

fn f32x3(v: &Value) -> Result<[f32; 3], Box<dyn Error>> {
    let a = v.as_array().ok_or("not an array")?;
    let mut out = [0.0; 3];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_f64().ok_or("not a number")? as f32;
    }
    Ok(out)
}

#[test]
fn preprocess_matches_pil_torchvision() -> TestResult {
    let g = Golden::load()?;
    let cases = g.index["preprocess"].as_array().ok_or("preprocess cases")?;
    assert!(cases.len() >= 12);
    let mut worst = 0.0f32; // in units of 1/255 before normalisation
    for case in cases {
        let (data, w, h, c) = &g.images[case["image"].as_str().ok_or("image")?];
        let img = ImageView::new(data, *w, *h, *c)?;
        let cfg = PreprocessConfig {
            width: uint(&case["width"])? as u32,
            height: uint(&case["height"])? as u32,
            channels: uint(&case["channels"])? as u8,
            resize_mode: serde_json::from_value(case["resize_mode"].clone())?,
            resize_shorter: case["resize_shorter"].as_u64().map(|s| s as u32),
            mean: f32x3(&case["mean"])?,
            std: f32x3(&case["std"])?,
        };
        let expected = g.slice(&case["offset"], &case["len"])?;
        let got = preprocess(&img, &cfg)?;
        assert_eq!(got.len(), expected.len(), "{case}");
        let plane = (cfg.width * cfg.height) as usize;
        let mut case_worst = 0.0f32;
        for (i, (a, b)) in got.iter().zip(expected).enumerate() {
            let ch = i / plane;
            let dev = (a - b).abs() * cfg.std[ch] * 255.0;
            case_worst = case_worst.max(dev);
            // 1/255 before normalisation, plus f32 slack for the normalisation arithmetic.
            assert!(
                dev <= 1.0 + 1e-3,
                "{}: value {i} (channel {ch}) is {a}, torchvision {b}: {dev:.4}/255 apart",
                case
            );
        }
        println!(
            "{} {:?} {}x{}x{}: max |ours - torchvision| = {case_worst:.4}/255",
            case["image"], cfg.resize_mode, cfg.width, cfg.height, cfg.channels
        );
        worst = worst.max(case_worst);
    }
    println!("worst over all cases: {worst:.4}/255");
    Ok(())
}

#[test]
fn identity_size_is_exact() -> TestResult {
    let g = Golden::load()?;
    let (data, w, h, _) = &g.images["rgb37x29"];
    let img = ImageView::rgb(data, *w, *h)?;
    let cfg = PreprocessConfig::imagenet(*w as u32, *h as u32, ResizeMode::Squash);
    let out = Preprocessor::new(*w, *h, &cfg)?.run_vec(&img)?;
    for (i, v) in out.iter().enumerate() {
        let (c, p) = (i / (w * h), i % (w * h));
        let e = (data[p * 3 + c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
        assert!((v - e).abs() < 1e-5, "value {i}");
    }
    Ok(())
}

#[test]
fn maps_match_torch_and_scipy() -> TestResult {
    let g = Golden::load()?;
    let (mut worst_up, mut worst_blur) = (0.0f32, 0.0f32);
    for case in g.index["maps"].as_array().ok_or("map cases")? {
        let (sw, sh) = (uint(&case["src_width"])?, uint(&case["src_height"])?);
        let (ow, oh) = (uint(&case["out_width"])?, uint(&case["out_height"])?);
        let sigma = case["sigma"].as_f64().ok_or("sigma")? as f32;
        let src = g.slice(&case["src"][0], &case["src"][1])?;
        let up_ref = g.slice(&case["upsampled"][0], &case["upsampled"][1])?;
        let blur_ref = g.slice(&case["blurred"][0], &case["blurred"][1])?;

        let up = upsample_bilinear(src, sw, sh, ow, oh)?;
        for (i, (a, b)) in up.iter().zip(up_ref).enumerate() {
            worst_up = worst_up.max((a - b).abs());
            assert!((a - b).abs() <= 1e-5, "{case}: upsampled[{i}] {a} vs torch {b}");
        }
        // Blur the reference upsample, so the two checks are independent.
        let mut blurred = up_ref.to_vec();
        gaussian_blur(&mut blurred, ow, oh, sigma)?;
        for (i, (a, b)) in blurred.iter().zip(blur_ref).enumerate() {
            worst_blur = worst_blur.max((a - b).abs());
            assert!((a - b).abs() <= 1e-5, "{case}: blurred[{i}] {a} vs scipy {b}");
        }
        let post = glass_postprocess(src, sw, sh, ow, oh, sigma)?;
        for (a, b) in post.iter().zip(blur_ref) {
            assert!((a - b).abs() <= 2e-5, "{case}: glass_postprocess {a} vs {b}");
        }
    }
    println!("max |upsample - torch| = {worst_up:.3e}, max |blur - scipy| = {worst_blur:.3e}");
    Ok(())
}

#[test]
fn resize_mode_serde_names() -> TestResult {
    assert_eq!(serde_json::to_string(&ResizeMode::Squash)?, "\"squash\"");
    assert_eq!(
        serde_json::to_string(&ResizeMode::ShorterSideThenCenterCrop)?,
        "\"shorter_side_then_center_crop\""
    );
    // Defaults fill everything but the size.
    let cfg: PreprocessConfig = serde_json::from_str(r#"{"width": 288, "height": 288}"#)?;
    assert_eq!(cfg, PreprocessConfig::imagenet(288, 288, ResizeMode::Squash));
    Ok(())
}
