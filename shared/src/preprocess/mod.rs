//! Image bytes -> normalised `f32` CHW tensor at the model input size, and model-space maps back onto
//! the original image. The one implementation that `host::data` (training, evaluation) and
//! `device::pipeline` (the station) both call, so the two can never drift apart.
//!
//! Resizing reproduces PIL's `Image.resize(size, Image.BILINEAR)` (what torchvision's `Resize` does
//! on PIL images): a separable convolution with the triangle filter whose support is stretched by the
//! downscale factor (antialiasing) and is plain bilinear when upscaling, horizontal pass first. PIL
//! rounds to `u8` after each pass; we stay in `f32`, so we differ from PIL by at most 1/255 per value
//! before normalisation (`shared/tests/preprocess_golden.rs` measures it against torchvision).
//!
//! [`ResizeMode::ShorterSideThenCenterCrop`] is torchvision `Resize(s)` then `CenterCrop((h, w))`,
//! with torchvision's integer arithmetic for the resized size and the crop offsets; only the pixels
//! inside the crop are computed.
//!
//! Map helpers ([`upsample_bilinear_into`], `gaussian_blur`, [`map_to_original_into`],
//! [`downsample_u8_into`]) implement GLASS's anomaly-map post-processing and the wire thumbnail.
//!
//! Without `alloc`, [`preprocess_into`] computes the filter weights on the fly; with `alloc`,
//! [`Preprocessor`] precomputes them once per (camera size, config) and keeps its scratch buffer.

mod maps;
mod resample;

use core::fmt;

use serde::{Deserialize, Serialize};

#[cfg(feature = "alloc")]
pub use maps::{
    downsample_u8, gaussian_blur, glass_postprocess, map_to_original, upsample_bilinear,
};
pub use maps::{
    downsample_u8_into, gaussian_radius, grid_size, heat, map_to_original_into,
    upsample_bilinear_into, MAX_GRID,
};
pub use resample::preprocess_into;
#[cfg(feature = "alloc")]
pub use resample::{preprocess, Preprocessor};

/// ImageNet channel means (RGB), as used by torchvision and timm.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), as used by torchvision and timm.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Errors of the preprocessing and map helpers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The image description does not fit its buffer, or a dimension is zero.
    InvalidImage {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
        /// Bytes per pixel (1 or 3 are supported).
        channels: usize,
        /// Bytes per row.
        stride: usize,
        /// Length of the buffer in bytes.
        len: usize,
    },
    /// A caller buffer (output tensor, map) has the wrong length.
    BufferLength {
        /// Which buffer.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A configuration or argument value is out of range.
    InvalidConfig {
        /// The field or argument name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The frame size differs from the size the [`Preprocessor`] plan was built for.
    SizeMismatch {
        /// `(width, height)` the plan was built for.
        expected: (usize, usize),
        /// `(width, height)` of the frame given.
        found: (usize, usize),
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidImage { width, height, channels, stride, len } => write!(
                f,
                "invalid image: {width}x{height}, {channels} channel(s), stride {stride} does not fit \
                 a buffer of {len} bytes (or a dimension is zero, or channels is not 1 or 3)"
            ),
            Error::BufferLength { what, expected, found } => {
                write!(f, "{what} has length {found}, expected {expected}")
            }
            Error::InvalidConfig { field, reason } => write!(f, "invalid `{field}`: {reason}"),
            Error::SizeMismatch { expected, found } => write!(
                f,
                "frame is {}x{} but the preprocessor was built for {}x{}",
                found.0, found.1, expected.0, expected.1
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// A borrowed 8-bit image: interleaved HWC, RGB8 (3 channels) or gray8 (1 channel), rows `stride`
/// bytes apart (V4L2's `bytesperline`; `width * channels` when tightly packed).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes per pixel: 3 (RGB) or 1 (gray).
    pub channels: usize,
    /// Bytes from the start of one row to the start of the next (`>= width * channels`).
    pub stride: usize,
    /// The pixels.
    pub data: &'a [u8],
}

impl<'a> ImageView<'a> {
    /// A tightly packed image (`stride = width * channels`); checks the buffer length.
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<Self, Error> {
        Self::with_stride(data, width, height, channels, width.saturating_mul(channels))
    }

    /// A packed RGB8 image.
    pub fn rgb(data: &'a [u8], width: usize, height: usize) -> Result<Self, Error> {
        Self::new(data, width, height, 3)
    }

    /// A packed gray8 image.
    pub fn gray(data: &'a [u8], width: usize, height: usize) -> Result<Self, Error> {
        Self::new(data, width, height, 1)
    }

    /// An image whose rows are `stride` bytes apart; checks that every row fits in `data`.
    pub fn with_stride(
        data: &'a [u8],
        width: usize,
        height: usize,
        channels: usize,
        stride: usize,
    ) -> Result<Self, Error> {
        let view = ImageView { width, height, channels, stride, data };
        view.validate()?;
        Ok(view)
    }

    /// Checks dimensions, channel count and buffer length (the fields are public, so the
    /// preprocessing entry points call this again).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = || Error::InvalidImage {
            width: self.width,
            height: self.height,
            channels: self.channels,
            stride: self.stride,
            len: self.data.len(),
        };
        if self.width == 0 || self.height == 0 || !(self.channels == 1 || self.channels == 3) {
            return Err(bad());
        }
        let row = self.width.checked_mul(self.channels).ok_or_else(bad)?;
        if self.stride < row {
            return Err(bad());
        }
        let needed = (self.height - 1).checked_mul(self.stride).and_then(|n| n.checked_add(row));
        match needed {
            Some(n) if n <= self.data.len() => Ok(()),
            _ => Err(bad()),
        }
    }
}

/// How the image is brought to the model input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Resize both axes independently to the input size (aspect ratio not kept, nothing cut off).
    /// torchvision `Resize((h, w))`. JSON: `"squash"`.
    #[default]
    Squash,
    /// torchvision `Resize(s)` (shorter side to `s`, long side `int(s * long / short)`) then
    /// `CenterCrop((h, w))`. `s` is [`PreprocessConfig::resize_shorter`], by default
    /// `max(width, height)`. JSON: `"shorter_side_then_center_crop"`.
    ShorterSideThenCenterCrop,
}

/// The model's input contract: size, channels, resize mode and normalisation. Serialised as the
/// `input` object of the model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Model input width in pixels.
    pub width: u32,
    /// Model input height in pixels.
    pub height: u32,
    /// Model input channels: 3 (RGB) or 1 (gray). Gray frames are replicated into 3 channels; RGB
    /// frames into a 1-channel model use PIL's `convert("L")` luma.
    #[serde(default = "default_channels")]
    pub channels: u8,
    /// How the frame is brought to `width` x `height`.
    #[serde(default)]
    pub resize_mode: ResizeMode,
    /// Shorter-side size before the centre crop (timm `crop_pct`, PatchCore/GLASS `resize` vs
    /// `imagesize`); `None` means `max(width, height)`. Ignored by [`ResizeMode::Squash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_shorter: Option<u32>,
    /// Per-channel mean subtracted after scaling to 0..1 (only `mean[0]` used for 1 channel).
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean (only `std[0]` for 1 channel).
    #[serde(default = "default_std")]
    pub std: [f32; 3],
}

fn default_channels() -> u8 {
    3
}
fn default_mean() -> [f32; 3] {
    IMAGENET_MEAN
}
fn default_std() -> [f32; 3] {
    IMAGENET_STD
}

impl Default for PreprocessConfig {
    /// 512x512 RGB, squash, ImageNet mean/std.
    fn default() -> Self {
        Self::imagenet(512, 512, ResizeMode::Squash)
    }
}

impl PreprocessConfig {
    /// RGB input with ImageNet mean/std (torchvision/timm backbones: WideResNet, TinyViT).
    pub fn imagenet(width: u32, height: u32, resize_mode: ResizeMode) -> Self {
        PreprocessConfig {
            width,
            height,
            channels: 3,
            resize_mode,
            resize_shorter: None,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// RGB input with EfficientNet-Lite's native scaling `(x * 255 - 127) / 128`, i.e. mean
    /// 127/255 and std 128/255 on every channel.
    pub fn efficientnet_lite(width: u32, height: u32, resize_mode: ResizeMode) -> Self {
        PreprocessConfig {
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            ..Self::imagenet(width, height, resize_mode)
        }
    }

    /// The same config with a shorter-side size for [`ResizeMode::ShorterSideThenCenterCrop`].
    pub fn with_resize_shorter(mut self, shorter: u32) -> Self {
        self.resize_shorter = Some(shorter);
        self
    }

    /// Number of `f32` values in one preprocessed image: `channels * height * width`.
    pub fn output_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// Checks sizes (> 0), channels (1 or 3), mean (finite), std (finite, > 0) and that the
    /// shorter-side size covers the crop.
    pub fn validate(&self) -> Result<(), Error> {
        let err = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.width == 0 {
            return err("width", "must be > 0");
        }
        if self.height == 0 {
            return err("height", "must be > 0");
        }
        if !(self.channels == 1 || self.channels == 3) {
            return err("channels", "must be 1 or 3");
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return err("mean", "must be finite");
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return err("std", "must be finite and > 0");
        }
        if let Some(s) = self.resize_shorter {
            if s < self.width.max(self.height) {
                return err("resize_shorter", "must be >= max(width, height) so the crop fits");
            }
        }
        Ok(())
    }

    /// Where a `src_width` x `src_height` frame goes: the full resized size and the crop inside it.
    pub fn geometry(&self, src_width: usize, src_height: usize) -> Result<Geometry, Error> {
        self.validate()?;
        if src_width == 0 || src_height == 0 {
            return Err(Error::InvalidConfig { field: "source size", reason: "must be > 0" });
        }
        let (tw, th) = (self.width as usize, self.height as usize);
        match self.resize_mode {
            ResizeMode::Squash => Ok(Geometry {
                src_width,
                src_height,
                resized_width: tw,
                resized_height: th,
                crop_left: 0,
                crop_top: 0,
                width: tw,
                height: th,
            }),
            ResizeMode::ShorterSideThenCenterCrop => {
                let s = self.resize_shorter.unwrap_or(self.width.max(self.height)) as usize;
                // torchvision `_compute_resized_output_size`: `int(s * long / short)`; Python's true
                // division of two exact integers is the correctly rounded double, as here.
                let (short, long) = if src_width <= src_height {
                    (src_width, src_height)
                } else {
                    (src_height, src_width)
                };
                let new_long = (s as f64 * long as f64 / short as f64) as usize;
                let (rw, rh) = if src_width <= src_height { (s, new_long) } else { (new_long, s) };
                Ok(Geometry {
                    src_width,
                    src_height,
                    resized_width: rw,
                    resized_height: rh,
                    crop_left: center_crop_offset(rw, tw),
                    crop_top: center_crop_offset(rh, th),
                    width: tw,
                    height: th,
                })
            }
        }
    }
}

/// torchvision `CenterCrop`: `int(round((size - crop) / 2.0))` with Python's round-half-to-even.
fn center_crop_offset(size: usize, crop: usize) -> usize {
    let diff = size.saturating_sub(crop);
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The resize-and-crop geometry for one source size and one [`PreprocessConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Source (camera) width.
    pub src_width: usize,
    /// Source (camera) height.
    pub src_height: usize,
    /// Width of the whole resized image (before the crop).
    pub resized_width: usize,
    /// Height of the whole resized image (before the crop).
    pub resized_height: usize,
    /// Left edge of the crop in the resized image.
    pub crop_left: usize,
    /// Top edge of the crop in the resized image.
    pub crop_top: usize,
    /// Model input width (crop width).
    pub width: usize,
    /// Model input height (crop height).
    pub height: usize,
}

impl Geometry {
    /// The model input's footprint in source pixel coordinates, `(x0, y0, x1, y1)` (continuous
    /// coordinates, pixel `i` spans `i..i+1`). The whole frame for squash.
    pub fn crop_in_source(&self) -> (f32, f32, f32, f32) {
        let sx = self.src_width as f64 / self.resized_width as f64;
        let sy = self.src_height as f64 / self.resized_height as f64;
        (
            (self.crop_left as f64 * sx) as f32,
            (self.crop_top as f64 * sy) as f32,
            ((self.crop_left + self.width) as f64 * sx) as f32,
            ((self.crop_top + self.height) as f64 * sy) as f32,
        )
    }
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::BufferLength { what, expected, found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offset_rounds_half_to_even() {
        // Python: int(round(d / 2.0)) for d = 0..8
        let expect = [0, 0, 1, 2, 2, 2, 3, 4, 4];
        for (d, e) in expect.iter().enumerate() {
            assert_eq!(center_crop_offset(10 + d, 10), *e, "diff {d}");
        }
    }

    #[test]
    fn geometry_matches_torchvision() {
        let cfg = PreprocessConfig::imagenet(16, 16, ResizeMode::ShorterSideThenCenterCrop);
        // 37x29: short = 29 -> 16, long int(16 * 37 / 29) = 20; left round(2.0) = 2
        let g = cfg.geometry(37, 29).expect("geometry");
        assert_eq!((g.resized_width, g.resized_height, g.crop_left, g.crop_top), (20, 16, 2, 0));
        // portrait 29x37 swaps
        let g = cfg.geometry(29, 37).expect("geometry");
        assert_eq!((g.resized_width, g.resized_height, g.crop_left, g.crop_top), (16, 20, 0, 2));
        let g = cfg.clone().with_resize_shorter(21).geometry(100, 50).expect("geometry");
        // long = int(21 * 100 / 50) = 42, left = round(13.0) = 13, top = round(2.5) = 2
        assert_eq!((g.resized_width, g.resized_height, g.crop_left, g.crop_top), (42, 21, 13, 2));
    }

    #[test]
    fn config_validation_and_serde_names() {
        let mut cfg = PreprocessConfig::default();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.output_len(), 3 * 512 * 512);
        cfg.std[1] = 0.0;
        assert!(matches!(cfg.validate(), Err(Error::InvalidConfig { field: "std", .. })));
        cfg = PreprocessConfig::imagenet(16, 24, ResizeMode::ShorterSideThenCenterCrop)
            .with_resize_shorter(20);
        assert!(matches!(
            cfg.validate(),
            Err(Error::InvalidConfig { field: "resize_shorter", .. })
        ));
        let lite = PreprocessConfig::efficientnet_lite(224, 224, ResizeMode::Squash);
        // (x*255 - 127) / 128 == (x - mean) / std
        for x in [0.0f32, 0.5, 1.0] {
            let a = (x * 255.0 - 127.0) / 128.0;
            let b = (x - lite.mean[0]) / lite.std[0];
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn image_view_checks_buffer() {
        let buf = [0u8; 12];
        assert!(ImageView::rgb(&buf, 2, 2).is_ok());
        assert!(ImageView::rgb(&buf, 3, 2).is_err());
        assert!(ImageView::with_stride(&buf, 1, 2, 3, 9).is_ok());
        assert!(ImageView::with_stride(&buf, 1, 2, 3, 10).is_err());
        assert!(ImageView::new(&buf, 2, 2, 2).is_err());
        assert!(ImageView::gray(&buf, 0, 2).is_err());
    }
}
