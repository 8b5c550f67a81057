//! Image formats: sniffing PNG / JPEG / WebP by magic number, and tiny exact encoders for
//! solid-colour lossless WebP (VP8L) and baseline JPEG, so the OpenAI fake can honour
//! `output_format` and Tripo's `rendered_image` is a real `.webp`.

use crate::png::{concept_rgb, CONCEPT_SIZE};

/// The three image formats both providers accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    /// The format of `bytes` by magic number.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&crate::png::PNG_SIGNATURE) {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }

    /// The format named by a MIME type (`image/png`, `image/jpeg`, `image/webp`; parameters ignored).
    pub fn from_mime(mime: &str) -> Option<ImageFormat> {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "image/png" => Some(ImageFormat::Png),
            "image/jpeg" => Some(ImageFormat::Jpeg),
            "image/webp" => Some(ImageFormat::Webp),
            _ => None,
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// OpenAI's `output_format` name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Webp => "webp",
        }
    }
}

/// The concept image `index` for `prompt` in `format`: [`crate::concept_png`] for PNG, the
/// same colour and size as lossless WebP or baseline JPEG otherwise.
pub fn concept_image(prompt: &str, index: u32, format: ImageFormat) -> Vec<u8> {
    let rgb = concept_rgb(prompt, index);
    match format {
        ImageFormat::Png => crate::png::concept_png(prompt, index),
        ImageFormat::Webp => webp_solid(CONCEPT_SIZE, CONCEPT_SIZE, [rgb[0], rgb[1], rgb[2], 255]),
        ImageFormat::Jpeg => jpeg_solid(CONCEPT_SIZE, CONCEPT_SIZE, rgb),
    }
}

/// Writes bits least-significant first (VP8L order).
struct LsbWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl LsbWriter {
    fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value & ((1u32 << n) - 1)) << self.bits;
        self.bits += n;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A solid-colour lossless WebP (`RIFF`/`WEBP`/`VP8L`). Every prefix code is a one-symbol
/// "simple" code, so the pixels themselves take zero bits. Dimensions are clamped to 1..=16384.
pub fn webp_solid(width: u32, height: u32, rgba: [u8; 4]) -> Vec<u8> {
    let (w, h) = (width.clamp(1, 16384), height.clamp(1, 16384));
    let mut bw = LsbWriter {
        out: vec![0x2f],
        acc: 0,
        bits: 0,
    };
    bw.put(w - 1, 14);
    bw.put(h - 1, 14);
    bw.put(u32::from(rgba[3] != 255), 1); // alpha_is_used
    bw.put(0, 3); // version
    bw.put(0, 1); // no transform
    bw.put(0, 1); // no colour cache
    bw.put(0, 1); // no meta prefix codes
                  // Prefix codes #1..#4: green, red, blue, alpha: simple, one symbol, 8-bit symbol.
    for sym in [rgba[1], rgba[0], rgba[2], rgba[3]] {
        bw.put(1, 1);
        bw.put(0, 1);
        bw.put(1, 1);
        bw.put(u32::from(sym), 8);
    }
    // Prefix code #5: distance: simple, one symbol, 1-bit symbol 0.
    bw.put(1, 1);
    bw.put(0, 1);
    bw.put(0, 1);
    bw.put(0, 1);
    let vp8l = bw.finish();
    let padded = vp8l.len() + (vp8l.len() & 1);
    let mut out = Vec::with_capacity(20 + padded);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((4 + 8 + padded) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(b"VP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    if vp8l.len() & 1 == 1 {
        out.push(0);
    }
    out
}

/// Writes bits most-significant first with JPEG byte stuffing (0xFF → 0xFF 0x00).
struct MsbWriter {
    out: Vec<u8>,
    acc: u8,
    bits: u32,
}

impl MsbWriter {
    fn put(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((code >> i) & 1) as u8;
            self.bits += 1;
            if self.bits == 8 {
                self.out.push(self.acc);
                if self.acc == 0xFF {
                    self.out.push(0);
                }
                self.acc = 0;
                self.bits = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        while self.bits != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

fn segment(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Bits needed for a DC difference (its JPEG "category").
fn category(v: i32) -> u32 {
    32 - v.unsigned_abs().leading_zeros()
}

/// A solid-colour baseline JPEG (JFIF, YCbCr 4:4:4, all quantisers 1, DC-only blocks).
/// Dimensions are clamped to 1..=65535.
pub fn jpeg_solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let (w, h) = (width.clamp(1, 65535), height.clamp(1, 65535));
    let (r, g, b) = (f64::from(rgb[0]), f64::from(rgb[1]), f64::from(rgb[2]));
    let ycc = [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0,
        0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0,
    ];
    // A constant 8×8 block of value v has DCT DC coefficient 8·(v − 128).
    let dc: Vec<i32> = ycc
        .iter()
        .map(|v| 8 * (v.round().clamp(0.0, 255.0) as i32 - 128))
        .collect();
    let mut cats: Vec<u8> = dc.iter().map(|v| category(*v) as u8).collect();
    cats.push(0);
    cats.sort_unstable();
    cats.dedup();

    let mut out = vec![0xFF, 0xD8];
    segment(
        &mut out,
        0xE0,
        &[b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0],
    );
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(&mut out, 0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&(h as u16).to_be_bytes());
    sof.extend_from_slice(&(w as u16).to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    segment(&mut out, 0xC0, &sof);
    // DC table 0: every category used gets a 3-bit code (000, 001, ...).
    let mut dht = vec![0x00];
    let mut counts = [0u8; 16];
    counts[2] = cats.len() as u8;
    dht.extend_from_slice(&counts);
    dht.extend_from_slice(&cats);
    // AC table 0: only EOB (0x00), as the 1-bit code 0.
    dht.push(0x10);
    let mut counts = [0u8; 16];
    counts[0] = 1;
    dht.extend_from_slice(&counts);
    dht.push(0x00);
    segment(&mut out, 0xC4, &dht);
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]);

    let code_of = |cat: u32| cats.iter().position(|c| u32::from(*c) == cat).unwrap_or(0) as u32;
    let mut bw = MsbWriter {
        out: Vec::new(),
        acc: 0,
        bits: 0,
    };
    let blocks = w.div_ceil(8) * h.div_ceil(8);
    let mut pred = [0i32; 3];
    for _ in 0..blocks {
        for (c, value) in dc.iter().enumerate() {
            let diff = value - pred[c];
            pred[c] = *value;
            let cat = category(diff);
            bw.put(code_of(cat), 3);
            if cat > 0 {
                let bits = if diff >= 0 {
                    diff
                } else {
                    diff + (1 << cat) - 1
                };
                bw.put(bits as u32, cat);
            }
            bw.put(0, 1); // EOB
        }
    }
    out.extend_from_slice(&bw.finish());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(
            ImageFormat::sniff(&crate::png::solid_png(2, 2, [0, 0, 0])),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(&jpeg_solid(8, 8, [1, 2, 3])),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(&webp_solid(8, 8, [1, 2, 3, 255])),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a......"), None);
        assert_eq!(
            ImageFormat::from_mime("image/PNG; q=1"),
            Some(ImageFormat::Png)
        );
        assert_eq!(ImageFormat::from_mime("application/octet-stream"), None);
    }

    #[test]
    fn webp_has_consistent_riff_sizes() {
        let w = webp_solid(64, 64, [10, 20, 30, 255]);
        let riff = u32::from_le_bytes(w[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, w.len());
        let chunk = u32::from_le_bytes(w[16..20].try_into().unwrap()) as usize;
        assert_eq!(w[20], 0x2f);
        assert!(20 + chunk <= w.len());
    }

    #[test]
    fn jpeg_categories() {
        assert_eq!(category(0), 0);
        assert_eq!(category(1), 1);
        assert_eq!(category(-1), 1);
        assert_eq!(category(-1024), 11);
        assert_eq!(category(1016), 10);
    }
}
