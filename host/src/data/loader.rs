//! Images and masks of a split as tensors, through `shared::preprocess` (the one implementation the
//! device also runs), so what the model sees in training is byte for byte what it sees on the station.
use std::path::Path;

use shared::preprocess::{preprocess, ImageView, PreprocessConfig};
use tch::Tensor;

use crate::data::split::{Item, Rotation};
use crate::{Error, Result};

/// Decodes `path` to RGB8 and applies `rot` (clockwise).
pub fn load_rgb(path: &Path, rot: Rotation) -> Result<image::RgbImage> {
    let img = image::open(path).map_err(|e| Error::Image { path: path.into(), source: e })?;
    Ok(rot.apply(&img).to_rgb8())
}

fn preprocess_err(path: &Path, e: shared::preprocess::Error) -> Error {
    Error::Dataset { path: path.into(), msg: format!("preprocessing failed: {e}") }
}

/// Preprocesses an RGB image into a `[3, H, W]` float tensor.
pub fn rgb_to_tensor(img: &image::RgbImage, cfg: &PreprocessConfig, path: &Path) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let view = ImageView::rgb(img.as_raw(), w as usize, h as usize)
        .map_err(|e| preprocess_err(path, e))?;
    let v = preprocess(&view, cfg).map_err(|e| preprocess_err(path, e))?;
    Ok(Tensor::from_slice(&v).view([cfg.channels as i64, cfg.height as i64, cfg.width as i64]))
}

/// The item's image as a `[3, H, W]` model input.
pub fn image_tensor(item: &Item, cfg: &PreprocessConfig) -> Result<Tensor> {
    rgb_to_tensor(&load_rgb(&item.image, item.rotation)?, cfg, &item.image)
}

/// The ground-truth mask of `item` at model input geometry as `[H, W]` with values 0/1; all zeros for
/// normal items. The mask is resampled exactly like the image (same resize mode and crop) and then
/// binarised at 0.5.
pub fn mask_tensor(item: &Item, cfg: &PreprocessConfig) -> Result<Tensor> {
    let (h, w) = (cfg.height as i64, cfg.width as i64);
    let Some(path) = &item.mask else {
        return Ok(Tensor::zeros([h, w], (tch::Kind::Float, tch::Device::Cpu)));
    };
    let img = image::open(path).map_err(|e| Error::Image { path: path.clone(), source: e })?;
    let gray = item.rotation.apply(&img).to_luma8();
    let mcfg = PreprocessConfig { channels: 1, mean: [0.0; 3], std: [1.0; 3], ..cfg.clone() };
    let (mw, mh) = gray.dimensions();
    let view = ImageView::gray(gray.as_raw(), mw as usize, mh as usize)
        .map_err(|e| preprocess_err(path, e))?;
    let v = preprocess(&view, &mcfg).map_err(|e| preprocess_err(path, e))?;
    Ok(Tensor::from_slice(&v).view([h, w]).ge(0.5).to_kind(tch::Kind::Float))
}

/// [`mask_tensor`] as one bool per pixel, row-major (true = defect), for the pixel metrics.
pub fn mask_pixels(item: &Item, cfg: &PreprocessConfig) -> Result<Vec<bool>> {
    let t = mask_tensor(item, cfg)?;
    Ok(Vec::<f32>::try_from(t.reshape([-1]))?.iter().map(|&v| v > 0.5).collect())
}
