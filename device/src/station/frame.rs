//! Camera frame formats -> RGB8: YUYV (YUY2, BT.601 limited range, the usual V4L2 webcam format),
//! MJPG (each frame a JPEG) and RGB3 (packed RGB24, passed through).

/// A V4L2 pixel format the station reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PixelFormat {
    /// `YUYV`: Y0 U Y1 V per two pixels.
    Yuyv,
    /// `MJPG`: motion JPEG.
    Mjpg,
    /// `RGB3`: packed RGB24.
    Rgb3,
}

impl PixelFormat {
    /// The V4L2 FourCC.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpg => *b"MJPG",
            PixelFormat::Rgb3 => *b"RGB3",
        }
    }
}

fn clip(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YUYV -> RGB8 with the BT.601 limited-range integer formulas (Y in 16..235, chroma in 16..240).
/// `stride` is the bytes per row (>= 2 * width).
pub fn yuyv_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    stride: usize,
) -> Result<Vec<u8>, String> {
    if width % 2 != 0 {
        return Err(format!("YUYV width {width} is odd"));
    }
    let stride = stride.max(2 * width);
    if src.len() < stride * (height.max(1) - 1) + 2 * width {
        return Err(format!(
            "YUYV frame has {} bytes, {width}x{height} needs {}",
            src.len(),
            stride * height
        ));
    }
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = &src[y * stride..y * stride + 2 * width];
        for q in row.chunks_exact(4) {
            let (u, v) = (i32::from(q[1]) - 128, i32::from(q[3]) - 128);
            for yy in [q[0], q[2]] {
                let c = 298 * (i32::from(yy) - 16);
                out.push(clip((c + 409 * v + 128) >> 8));
                out.push(clip((c - 100 * u - 208 * v + 128) >> 8));
                out.push(clip((c + 516 * u + 128) >> 8));
            }
        }
    }
    Ok(out)
}

/// MJPG frame -> RGB8 and its size.
pub fn mjpg_to_rgb(src: &[u8]) -> Result<(Vec<u8>, usize, usize), String> {
    // Through the station's decoder limits (defaults): a corrupt or hostile JPEG header cannot ask for
    // more memory than one bounded frame.
    runtime::decode::decode_bytes(src, &runtime::decode::DecodeLimits::default())
        .map_err(|e| format!("MJPG frame: {e}"))
}

/// Any supported frame -> RGB8 (`width`, `height`, `stride` from the driver; MJPG carries its own).
pub fn to_rgb(
    format: PixelFormat,
    src: &[u8],
    width: usize,
    height: usize,
    stride: usize,
) -> Result<(Vec<u8>, usize, usize), String> {
    match format {
        PixelFormat::Yuyv => Ok((yuyv_to_rgb(src, width, height, stride)?, width, height)),
        PixelFormat::Mjpg => mjpg_to_rgb(src),
        PixelFormat::Rgb3 => {
            let stride = stride.max(3 * width);
            if src.len() < stride * height.saturating_sub(1) + 3 * width {
                return Err(format!("RGB3 frame has {} bytes for {width}x{height}", src.len()));
            }
            let mut out = Vec::with_capacity(width * height * 3);
            for y in 0..height {
                out.extend_from_slice(&src[y * stride..y * stride + 3 * width]);
            }
            Ok((out, width, height))
        }
    }
}
