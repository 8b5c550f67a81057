//! PNG: a tiny dependency-free encoder (stored deflate blocks, CRC-32 via `crc32fast`), text
//! chunks (`tEXt` / `iTXt`) for carrying directives, IHDR parsing, and the deterministic concept
//! images the OpenAI fake returns ([`concept_png`]).

use crate::util::{fnv1a64, splitmix64};

/// The PNG file signature.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Width and height of every concept image the OpenAI fake returns.
pub const CONCEPT_SIZE: u32 = 64;

fn push_chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(data);
    let mut h = crc32fast::Hasher::new();
    h.update(ty);
    h.update(data);
    out.extend_from_slice(&h.finalize().to_be_bytes());
}

/// A zlib stream made of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 16);
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        out.push(u8::from(last));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn push_text(out: &mut Vec<u8>, keyword: &str, text: &str) {
    let keyword: String = keyword
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .take(79)
        .collect();
    let keyword = if keyword.is_empty() {
        "Comment".to_string()
    } else {
        keyword
    };
    if text.chars().all(|c| (c as u32) < 256 && c != '\0') {
        // tEXt is Latin-1.
        let mut data = keyword.into_bytes();
        data.push(0);
        data.extend(text.chars().map(|c| c as u32 as u8));
        push_chunk(out, b"tEXt", &data);
    } else {
        // iTXt: keyword, 0, compression flag 0, method 0, language "", 0, translated "", 0, UTF-8.
        let mut data = keyword.into_bytes();
        data.extend_from_slice(&[0, 0, 0, 0, 0]);
        data.extend_from_slice(text.replace('\0', "").as_bytes());
        push_chunk(out, b"iTXt", &data);
    }
}

/// Encodes an 8-bit RGB PNG; `pixel(x, y)` gives each colour; `texts` become text chunks.
pub fn encode_rgb(
    width: u32,
    height: u32,
    pixel: impl Fn(u32, u32) -> [u8; 3],
    texts: &[(&str, &str)],
) -> Vec<u8> {
    let mut raw = Vec::with_capacity((width as usize * 3 + 1) * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut out = PNG_SIGNATURE.to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, filter 0, no interlace
    push_chunk(&mut out, b"IHDR", &ihdr);
    for (k, v) in texts {
        push_text(&mut out, k, v);
    }
    push_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// `png` grown to `total` bytes (when it is smaller) by a private ancillary chunk `fkPd` of
/// pseudo-random bytes before `IEND`: still a valid PNG (decoders skip unknown ancillary
/// chunks) whose size and base64 are those of a large, incompressible image. The
/// `image_bytes=N` directive uses it to make OpenAI replies as large as real ones.
pub fn pad_png(mut png: Vec<u8>, total: usize) -> Vec<u8> {
    const IEND_LEN: usize = 12;
    if png.len() < 8 + IEND_LEN || total < png.len() + 12 {
        return png;
    }
    let iend = png.split_off(png.len() - IEND_LEN);
    let len = total - png.len() - IEND_LEN - 12;
    let mut data = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - data.len()).min(8);
        data.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    push_chunk(&mut png, b"fkPd", &data);
    png.extend_from_slice(&iend);
    png
}

/// A solid-colour RGB PNG.
pub fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode_rgb(width, height, |_, _| rgb, &[])
}

/// A solid-colour RGB PNG carrying one text chunk, e.g.
/// `png_with_text(64, 64, [200, 10, 10], "Comment", "[[fake:final=failed,nonce=n1]]")`:
/// the way a test puts a directive into an image for an image-only Tripo task.
pub fn png_with_text(width: u32, height: u32, rgb: [u8; 3], keyword: &str, text: &str) -> Vec<u8> {
    encode_rgb(width, height, |_, _| rgb, &[(keyword, text)])
}

/// Width and height from a PNG's IHDR, if `bytes` is a PNG.
pub fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || bytes[..8] != PNG_SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    Some((w, h))
}

/// The `(keyword, text)` pairs of a PNG's `tEXt` and uncompressed `iTXt` chunks.
pub fn png_texts(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if bytes.len() < 8 || bytes[..8] != PNG_SIGNATURE {
        return out;
    }
    let mut pos = 8usize;
    while pos + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let ty = &bytes[pos + 4..pos + 8];
        let Some(data) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if let Some(nul) = data.iter().position(|b| *b == 0) {
            let keyword = String::from_utf8_lossy(&data[..nul]).into_owned();
            if ty == b"tEXt" {
                out.push((
                    keyword,
                    data[nul + 1..].iter().map(|b| *b as char).collect(),
                ));
            } else if ty == b"iTXt" && data.get(nul + 1) == Some(&0) {
                // Skip flag, method, language\0, translated keyword\0.
                let rest = data.get(nul + 3..).unwrap_or_default();
                let mut fields = rest.splitn(3, |b| *b == 0);
                let _lang = fields.next();
                let _translated = fields.next();
                if let Some(text) = fields.next() {
                    out.push((keyword, String::from_utf8_lossy(text).into_owned()));
                }
            }
        }
        if ty == b"IEND" {
            break;
        }
        pos += 12 + len;
    }
    out
}

/// The colour of concept image `index` for `prompt` (deterministic).
pub fn concept_rgb(prompt: &str, index: u32) -> [u8; 3] {
    let mut seed = prompt.as_bytes().to_vec();
    seed.push(0xff);
    seed.extend_from_slice(&index.to_le_bytes());
    let v = splitmix64(fnv1a64(&seed)).to_le_bytes();
    [v[0], v[1], v[2]]
}

/// The exact bytes of the PNG the OpenAI fake returns as `data[index].b64_json` for `prompt`
/// (the prompt exactly as sent, directives included): a 64×64 solid colour derived from
/// `(prompt, index)`, with an `iTXt`/`tEXt` `Description` holding the prompt in which every
/// `[[fake:` is written `[[fake-`, so a nonce in the prompt can be matched by
/// `POST /__fake/directives` when the concept is later uploaded to Tripo, but the prompt's own
/// directives do not travel with the image.
pub fn concept_png(prompt: &str, index: u32) -> Vec<u8> {
    let rgb = concept_rgb(prompt, index);
    let description = format!("concept {index}: {}", defang(prompt));
    encode_rgb(
        CONCEPT_SIZE,
        CONCEPT_SIZE,
        |_, _| rgb,
        &[
            ("Software", "fake-providers"),
            ("Description", &description),
        ],
    )
}

/// `text` with every `[[fake:` replaced by `[[fake-` (so it is no longer a directive).
pub fn defang(text: &str) -> String {
    text.replace("[[fake:", "[[fake-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_png_has_the_size_asked_and_stays_a_png() {
        let small = concept_png("p", 0);
        let big = pad_png(small.clone(), 100_000);
        assert_eq!(big.len(), 100_000);
        assert_eq!(png_dimensions(&big), png_dimensions(&small));
        let types = chunk_types(&big);
        assert_eq!(types.last().map(String::as_str), Some("IEND"));
        assert!(types.iter().any(|t| t == "fkPd"));
        assert_eq!(pad_png(small.clone(), 10), small);
    }

    fn chunk_types(png: &[u8]) -> Vec<String> {
        let mut types = Vec::new();
        let mut pos = 8;
        while pos + 12 <= png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let ty = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            let mut h = crc32fast::Hasher::new();
            h.update(ty);
            h.update(data);
            assert_eq!(
                h.finalize(),
                crc,
                "bad CRC in chunk {}",
                String::from_utf8_lossy(ty)
            );
            types.push(String::from_utf8_lossy(ty).into_owned());
            pos += 12 + len;
        }
        assert_eq!(pos, png.len());
        types
    }

    #[test]
    fn encodes_a_well_formed_png() {
        let png = png_with_text(20, 10, [1, 2, 3], "Comment", "[[fake:moderation]]");
        assert_eq!(png_dimensions(&png), Some((20, 10)));
        assert_eq!(chunk_types(&png), ["IHDR", "tEXt", "IDAT", "IEND"]);
        assert_eq!(
            png_texts(&png),
            [("Comment".to_string(), "[[fake:moderation]]".to_string())]
        );
    }

    #[test]
    fn zlib_stored_splits_large_data() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let z = zlib_stored(&data);
        // 4 blocks of 5-byte headers + 2-byte zlib header + 4-byte adler.
        assert_eq!(z.len(), data.len() + 4 * 5 + 6);
        assert_eq!(z[2], 0);
        let last_header = 2 + 3 * (65535 + 5);
        assert_eq!(z[last_header], 1);
        assert_eq!(
            zlib_stored(&[]),
            [0x78, 0x01, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 1]
        );
    }

    #[test]
    fn concept_pngs_are_deterministic_and_distinct() {
        let a0 = concept_png("a red chair", 0);
        assert_eq!(a0, concept_png("a red chair", 0));
        assert_ne!(concept_rgb("a red chair", 0), concept_rgb("a red chair", 1));
        assert_ne!(
            concept_rgb("a red chair", 0),
            concept_rgb("a blue chair", 0)
        );
        assert_eq!(png_dimensions(&a0), Some((64, 64)));
        let unicode = concept_png("un gâteau 🎂 [[fake:moderation]]", 2);
        let texts = png_texts(&unicode);
        assert_eq!(texts[1].1, "concept 2: un gâteau 🎂 [[fake-moderation]]");
        assert_eq!(
            chunk_types(&unicode),
            ["IHDR", "tEXt", "iTXt", "IDAT", "IEND"]
        );
    }
}
