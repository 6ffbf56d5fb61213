//! The 3x5 bit glyphs of the object's printed mark and lot code: random glyphs and their ink test.

use rand::Rng;

pub(super) fn random_glyph(rng: &mut impl Rng) -> u16 {
    loop {
        let g: u16 = rng.random::<u16>() & 0x7FFF;
        if (5..=11).contains(&g.count_ones()) {
            return g;
        }
    }
}

/// Whether (u, v) (relative to the top-left of a text line of glyphs `w` x `h`, pitch 1.35 w) is ink.
pub(super) fn glyph_ink(glyphs: &[u16], u: f32, v: f32, w: f32, h: f32) -> bool {
    if u < 0.0 || v < 0.0 || v >= h {
        return false;
    }
    let pitch = w * 1.35;
    let idx = (u / pitch) as usize;
    let within = u - idx as f32 * pitch;
    if idx >= glyphs.len() || within >= w {
        return false;
    }
    let bx = ((within / w * 3.0) as u32).min(2);
    let by = ((v / h * 5.0) as u32).min(4);
    glyphs[idx] >> (by * 3 + bx) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_bits() {
        // Glyph 0b1 lights the top-left cell only.
        assert!(glyph_ink(&[1], 0.1, 0.1, 3.0, 5.0));
        assert!(!glyph_ink(&[1], 2.5, 0.1, 3.0, 5.0));
        assert!(!glyph_ink(&[1], 0.1, 5.5, 3.0, 5.0));
    }
}
