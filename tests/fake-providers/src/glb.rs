//! Deterministic binary glTF (GLB v2) models of any size, generated on the fly.
//!
//! Layout of a model for `(seed, size)`: the 12-byte header (`glTF`, version 2, total length),
//! a JSON chunk (padded with spaces to fix the total size exactly) and a BIN chunk whose length
//! is the buffer's `byteLength`. The BIN chunk starts with the mesh and ends with pseudo-random
//! filler (SplitMix64 in counter mode keyed by the seed), so any byte range can be produced
//! without producing what comes before it.
//!
//! The mesh is a renderable, textured cube ([`TEXTURED_MIN_BYTES`] and larger, so every default
//! model): 24 vertices with normals and texture coordinates, 36 indices, one material whose base
//! colour is an embedded 16×16 PNG (a checkerboard in two colours taken from the seed, sampled
//! `NEAREST`). Smaller models hold a single untextured triangle. Every bufferView starts on a
//! 4-byte boundary. The JSON's `asset.extras` records `fake_seed` and `fake_total_bytes`, so a
//! copy identifies itself: [`glb_info`] reads them back and [`glb_sha256_hex`] recomputes the
//! digest.
//!
//! The Tripo fake uses the seed `"<task_id>:<output kind>"` ([`model_seed`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util::{fnv1a64, hex, splitmix64};

/// Size of a model when no `glb_bytes` directive says otherwise.
pub const DEFAULT_GLB_BYTES: u64 = 64 * 1024;
/// The smallest model (room for the header, the JSON and the triangle).
pub const MIN_GLB_BYTES: u64 = 2048;
/// The largest model a GLB can describe (its length field is a u32), rounded down to 4.
pub const MAX_GLB_BYTES: u64 = (u32::MAX as u64) & !3;

/// The smallest model that holds the textured cube (a smaller one holds a triangle).
pub const TEXTURED_MIN_BYTES: u64 = 8192;

const STREAM_CHUNK: u64 = 64 * 1024;
const TRIANGLE: [f32; 9] = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
/// Side of the cube's square texture, in pixels.
const TEXTURE_PX: u32 = 16;
const JSON_CHUNK: u32 = 0x4E4F_534A;
const BIN_CHUNK: u32 = 0x004E_4942;

/// The exact length of the model generated for a requested `size`: clamped to
/// [`MIN_GLB_BYTES`]..=[`MAX_GLB_BYTES`] and rounded up to a multiple of 4.
pub fn glb_bytes_len(size: u64) -> u64 {
    (size.clamp(MIN_GLB_BYTES, MAX_GLB_BYTES) + 3) & !3
}

/// The seed of a Tripo task's model file: `"<task_id>:<kind>"`, kind being `pbr_model`,
/// `model` or `base_model`.
pub fn model_seed(task_id: &str, kind: &str) -> String {
    format!("{task_id}:{kind}")
}

/// A model: its fixed head (header, JSON chunk, BIN chunk header, triangle) and its filler key.
#[derive(Debug, Clone)]
pub struct Glb {
    head: Vec<u8>,
    total: u64,
    key: u64,
}

impl Glb {
    /// The model for `seed` with requested `size` (see [`glb_bytes_len`]).
    pub fn new(seed: &str, size: u64) -> Glb {
        let total = glb_bytes_len(size);
        let shown: String = seed.chars().take(128).collect();
        let key = fnv1a64(seed.as_bytes());
        let extras = json!({"fake_seed": shown, "fake_total_bytes": total});
        let cube = Mesh::cube(key);
        // The cube's head is under 5 KiB even with the longest seed, so it always fits here.
        let mesh = if total >= TEXTURED_MIN_BYTES && head_len(&cube, &extras, total) <= total {
            cube
        } else {
            Mesh::triangle()
        };
        let json_for = |bin_len: u64| {
            let mut doc = mesh.json.clone();
            doc["asset"]["extras"] = extras.clone();
            doc["buffers"] = json!([{"byteLength": bin_len}]);
            doc.to_string()
        };
        // byteLength has at most as many digits as `total`, so this padding always fits.
        let json_len = (json_for(total).len() as u64 + 3) & !3;
        let bin_len = total - 28 - json_len;
        let mut json_bytes = json_for(bin_len).into_bytes();
        json_bytes.resize(json_len as usize, b' ');

        let mut head = Vec::with_capacity(28 + json_bytes.len() + mesh.bin.len());
        head.extend_from_slice(b"glTF");
        head.extend_from_slice(&2u32.to_le_bytes());
        head.extend_from_slice(&(total as u32).to_le_bytes());
        head.extend_from_slice(&(json_len as u32).to_le_bytes());
        head.extend_from_slice(&JSON_CHUNK.to_le_bytes());
        head.extend_from_slice(&json_bytes);
        head.extend_from_slice(&(bin_len as u32).to_le_bytes());
        head.extend_from_slice(&BIN_CHUNK.to_le_bytes());
        head.extend_from_slice(&mesh.bin);
        Glb { head, total, key }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Always false (a model is at least [`MIN_GLB_BYTES`] long).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Fills `buf` with the bytes at `offset..`; bytes past the end are left untouched.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let end = self.total.min(offset.saturating_add(buf.len() as u64));
        let mut p = offset;
        let mut i = 0usize;
        while p < end {
            if p < self.head.len() as u64 {
                buf[i] = self.head[p as usize];
                i += 1;
                p += 1;
                continue;
            }
            let word = splitmix64(self.key.wrapping_add(p >> 3)).to_le_bytes();
            let start = (p & 7) as usize;
            let n = (8 - start).min((end - p) as usize);
            buf[i..i + n].copy_from_slice(&word[start..start + n]);
            i += n;
            p += n as u64;
        }
    }

    /// The bytes at `offset..offset+len`, cut at the end of the file.
    pub fn chunk(&self, offset: u64, len: usize) -> Vec<u8> {
        let n = self.total.saturating_sub(offset).min(len as u64) as usize;
        let mut v = vec![0u8; n];
        self.fill(offset, &mut v);
        v
    }

    /// Lower-case hex SHA-256 of the whole file (computed in 1 MiB pieces).
    pub fn sha256_hex(&self) -> String {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < self.total {
            let n = (self.total - off).min(buf.len() as u64) as usize;
            self.fill(off, &mut buf[..n]);
            h.update(&buf[..n]);
            off += n as u64;
        }
        hex(&h.finalize())
    }

    /// The bytes `start..end` as a stream of 64 KiB pieces, generated as they are polled.
    pub fn stream(
        self: Arc<Self>,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let end = end.min(self.total);
        futures_util::stream::unfold(start, move |pos| {
            let glb = Arc::clone(&self);
            async move {
                if pos >= end {
                    return None;
                }
                let n = (end - pos).min(STREAM_CHUNK) as usize;
                let mut v = vec![0u8; n];
                glb.fill(pos, &mut v);
                Some((Ok(Bytes::from(v)), pos + n as u64))
            }
        })
    }
}

/// The start of a model's BIN chunk and the JSON that describes it (without `buffers`).
struct Mesh {
    json: Value,
    bin: Vec<u8>,
}

/// Bytes of the header, JSON chunk (as for `total`) and BIN chunk header plus `mesh`.
fn head_len(mesh: &Mesh, extras: &Value, total: u64) -> u64 {
    let mut doc = mesh.json.clone();
    doc["asset"]["extras"] = extras.clone();
    doc["buffers"] = json!([{"byteLength": total}]);
    28 + ((doc.to_string().len() as u64 + 3) & !3) + mesh.bin.len() as u64
}

fn asset() -> Value {
    json!({"version": "2.0", "generator": "fake-providers (makeit3d-bff tests)"})
}

fn push_f32s(bin: &mut Vec<u8>, values: &[f32]) {
    for v in values {
        bin.extend_from_slice(&v.to_le_bytes());
    }
}

impl Mesh {
    /// One untextured triangle (36 bytes): the model when the size leaves no room for the cube.
    fn triangle() -> Mesh {
        let mut bin = Vec::with_capacity(36);
        push_f32s(&mut bin, &TRIANGLE);
        let json = json!({
            "asset": asset(),
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "fake"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 4}]}],
            "accessors": [{
                "bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0],
            }],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36, "target": 34962}],
        });
        Mesh { json, bin }
    }

    /// A unit cube centred on the origin, each face mapped to the whole texture, which is a
    /// 16×16 PNG checkerboard in two colours of `key`, framed by a dark border.
    fn cube(key: u64) -> Mesh {
        // (normal, u axis, v axis) of each face; corners are normal/2 ± u/2 ± v/2.
        const FACES: [([f32; 3], [f32; 3], [f32; 3]); 6] = [
            ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]),
            ([-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
            ([0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
            ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
            ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            ([0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        ];
        const CORNERS: [(f32, f32); 4] = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)];
        let (mut positions, mut normals, mut uvs, mut indices) = (
            Vec::with_capacity(72),
            Vec::with_capacity(72),
            Vec::with_capacity(48),
            Vec::with_capacity(36),
        );
        for (f, (n, u, v)) in FACES.iter().enumerate() {
            for (a, b) in CORNERS {
                for k in 0..3 {
                    positions.push(n[k] * 0.5 + u[k] * a + v[k] * b);
                }
                normals.extend_from_slice(n);
                // glTF texture coordinates start at the image's top-left corner.
                uvs.extend_from_slice(&[a + 0.5, 0.5 - b]);
            }
            let base = (f * 4) as u16;
            indices.extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
        }
        let colour = |n: u64| {
            let w = splitmix64(key.wrapping_add(n)).to_le_bytes();
            // Bright enough to read on a white page, never black.
            [64 | w[0], 64 | w[1], 64 | w[2]]
        };
        let (light, dark) = (colour(1), colour(2).map(|c| c / 2));
        let last = TEXTURE_PX - 1;
        let png = crate::png::encode_rgb(
            TEXTURE_PX,
            TEXTURE_PX,
            |x, y| {
                if x == 0 || y == 0 || x == last || y == last {
                    [24, 24, 32]
                } else if ((x - 1) / 7 + (y - 1) / 7) % 2 == 0 {
                    light
                } else {
                    dark
                }
            },
            &[],
        );

        let mut bin = Vec::with_capacity(840 + png.len() + 3);
        push_f32s(&mut bin, &positions);
        push_f32s(&mut bin, &normals);
        push_f32s(&mut bin, &uvs);
        for i in &indices {
            bin.extend_from_slice(&i.to_le_bytes());
        }
        let views = [
            (0, 288, Some(34962)),
            (288, 288, Some(34962)),
            (576, 192, Some(34962)),
            (768, 72, Some(34963)),
            (840, png.len(), None),
        ];
        bin.extend_from_slice(&png);
        while bin.len() % 4 != 0 {
            bin.push(0);
        }
        let buffer_views: Vec<Value> = views
            .iter()
            .map(|(offset, len, target)| {
                let mut v = json!({"buffer": 0, "byteOffset": offset, "byteLength": len});
                if let Some(t) = target {
                    v["target"] = json!(t);
                }
                v
            })
            .collect();
        let json = json!({
            "asset": asset(),
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "fake"}],
            "meshes": [{"name": "fake cube", "primitives": [{
                "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
                "indices": 3, "material": 0, "mode": 4,
            }]}],
            "materials": [{"name": "checker", "pbrMetallicRoughness": {
                "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.8,
            }}],
            "textures": [{"sampler": 0, "source": 0}],
            "samplers": [{"magFilter": 9728, "minFilter": 9728, "wrapS": 33071, "wrapT": 33071}],
            "images": [{"bufferView": 4, "mimeType": "image/png"}],
            "accessors": [
                {"bufferView": 0, "componentType": 5126, "count": 24, "type": "VEC3",
                 "min": [-0.5, -0.5, -0.5], "max": [0.5, 0.5, 0.5]},
                {"bufferView": 1, "componentType": 5126, "count": 24, "type": "VEC3"},
                {"bufferView": 2, "componentType": 5126, "count": 24, "type": "VEC2"},
                {"bufferView": 3, "componentType": 5123, "count": 36, "type": "SCALAR"},
            ],
            "bufferViews": buffer_views,
        });
        Mesh { json, bin }
    }
}

/// The bytes `offset..offset+len` of the model for `(seed, size)` (cut at its end).
pub fn glb_chunk(seed: &str, size: u64, offset: u64, len: usize) -> Vec<u8> {
    Glb::new(seed, size).chunk(offset, len)
}

/// The whole model for `(seed, size)` in memory (for small sizes in tests).
pub fn glb_bytes(seed: &str, size: u64) -> Vec<u8> {
    let g = Glb::new(seed, size);
    g.chunk(0, g.len() as usize)
}

/// Lower-case hex SHA-256 of the model for `(seed, size)`, without keeping it in memory.
pub fn glb_sha256_hex(seed: &str, size: u64) -> String {
    Glb::new(seed, size).sha256_hex()
}

/// What [`glb_info`] reads from the start of a GLB.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbInfo {
    /// The header's total length.
    pub total_len: u64,
    /// The JSON chunk, parsed.
    pub json: Value,
    /// The BIN chunk's length.
    pub bin_len: u64,
    /// `asset.extras.fake_seed`, when the file came from this crate.
    pub seed: Option<String>,
}

/// Parses and checks the structure of a GLB v2 from its first bytes (the header, the JSON
/// chunk and the BIN chunk header are enough): magic, version, chunk types and lengths, and
/// that the JSON's `buffers[0].byteLength` matches the BIN chunk.
pub fn glb_info(bytes: &[u8]) -> Result<GlbInfo, String> {
    let u32_at = |at: usize| -> Result<u64, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .ok_or_else(|| format!("truncated at byte {at}"))
    };
    if bytes.get(..4) != Some(b"glTF".as_slice()) {
        return Err("bad magic (expected glTF)".into());
    }
    if u32_at(4)? != 2 {
        return Err("not version 2".into());
    }
    let total_len = u32_at(8)?;
    let json_len = u32_at(12)?;
    if u32_at(16)? != u64::from(JSON_CHUNK) {
        return Err("first chunk is not JSON".into());
    }
    if json_len % 4 != 0 {
        return Err("JSON chunk length is not a multiple of 4".into());
    }
    let json_end = 20 + json_len as usize;
    let json_bytes = bytes.get(20..json_end).ok_or("truncated JSON chunk")?;
    let json: Value = serde_json::from_slice(json_bytes)
        .map_err(|e| format!("JSON chunk does not parse: {e}"))?;
    let bin_len = u32_at(json_end)?;
    if u32_at(json_end + 4)? != u64::from(BIN_CHUNK) {
        return Err("second chunk is not BIN".into());
    }
    if 20 + json_len + 8 + bin_len != total_len {
        return Err(format!(
            "chunk lengths add up to {} but the header says {total_len}",
            20 + json_len + 8 + bin_len
        ));
    }
    if json["asset"]["version"] != "2.0" {
        return Err("asset.version is not 2.0".into());
    }
    let declared = json["buffers"][0]["byteLength"]
        .as_u64()
        .ok_or("no buffers[0].byteLength")?;
    if declared > bin_len || bin_len - declared > 3 {
        return Err(format!(
            "buffers[0].byteLength {declared} does not match BIN chunk {bin_len}"
        ));
    }
    let seed = json["asset"]["extras"]["fake_seed"]
        .as_str()
        .map(str::to_string);
    Ok(GlbInfo {
        total_len,
        json,
        bin_len,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_aligned() {
        for size in [0, 1, 2048, 2049, 65_536, 1_000_003, 123_456_789] {
            let g = Glb::new("t:pbr_model", size);
            assert_eq!(g.len(), glb_bytes_len(size));
            assert_eq!(g.len() % 4, 0);
            let info = glb_info(&g.chunk(0, 4096)).unwrap();
            assert_eq!(info.total_len, g.len());
            assert_eq!(info.seed.as_deref(), Some("t:pbr_model"));
        }
    }

    #[test]
    fn chunks_agree_with_the_whole_file() {
        let whole = glb_bytes("seed-a", 10_000);
        assert_eq!(whole.len(), 10_000);
        for (off, len) in [(0, 10), (5, 3000), (1403, 17), (9990, 100), (20_000, 5)] {
            let c = glb_chunk("seed-a", 10_000, off, len);
            let end = (off as usize + len).min(whole.len());
            let start = (off as usize).min(whole.len());
            assert_eq!(c, whole[start..end], "offset {off}");
        }
        assert_ne!(glb_bytes("seed-b", 10_000), whole);
    }

    #[test]
    fn long_seeds_still_fit_the_minimum() {
        let seed = "\u{1}".repeat(500);
        let g = Glb::new(&seed, 0);
        assert_eq!(g.len(), MIN_GLB_BYTES);
        glb_info(&g.chunk(0, 4096)).unwrap();
    }

    /// The BIN chunk's bytes `offset..offset+len` of a whole model.
    fn bin_slice(bytes: &[u8], info: &GlbInfo, offset: u64, len: u64) -> Vec<u8> {
        let json_len = info.total_len - info.bin_len - 28;
        let start = (28 + json_len + offset) as usize;
        bytes[start..start + len as usize].to_vec()
    }

    #[test]
    fn default_models_are_a_textured_cube_with_aligned_views() {
        let longest = "\u{1}".repeat(500);
        for (seed, size) in [
            ("t-1:pbr_model", TEXTURED_MIN_BYTES),
            (longest.as_str(), TEXTURED_MIN_BYTES),
            ("t-1:pbr_model", DEFAULT_GLB_BYTES),
            ("t-1:model", 1_000_003),
        ] {
            let g = Glb::new(seed, size);
            let bytes = g.chunk(0, 8192);
            let info = glb_info(&bytes).unwrap();
            let j = &info.json;
            assert_eq!(
                j["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"], 2,
                "{size}"
            );
            assert_eq!(j["images"][0]["mimeType"], "image/png");
            for v in j["bufferViews"].as_array().unwrap() {
                let (off, len) = (
                    v["byteOffset"].as_u64().unwrap(),
                    v["byteLength"].as_u64().unwrap(),
                );
                assert_eq!(off % 4, 0);
                assert!(off + len <= info.bin_len);
            }
            let png = &j["bufferViews"][4];
            let png = bin_slice(
                &bytes,
                &info,
                png["byteOffset"].as_u64().unwrap(),
                png["byteLength"].as_u64().unwrap(),
            );
            assert_eq!(
                crate::png::png_dimensions(&png),
                Some((TEXTURE_PX, TEXTURE_PX))
            );
            // The index buffer names only the 24 vertices.
            let idx = bin_slice(&bytes, &info, 768, 72);
            assert!(idx.chunks(2).all(|c| u16::from_le_bytes([c[0], c[1]]) < 24));
        }
    }

    #[test]
    fn smaller_models_are_a_triangle_and_colours_follow_the_seed() {
        let info = glb_info(&glb_bytes("s", TEXTURED_MIN_BYTES - 4)).unwrap();
        assert!(info.json.get("images").is_none());
        assert_eq!(info.json["accessors"][0]["count"], 3);
        assert_ne!(
            glb_bytes("a:model", 8192)[..2048],
            glb_bytes("b:model", 8192)[..2048]
        );
    }

    #[test]
    fn detects_broken_files() {
        let mut b = glb_bytes("s", 4096);
        assert!(glb_info(&b[..10]).is_err());
        b[8] ^= 1;
        assert!(glb_info(&b).is_err());
        assert!(glb_info(b"PK\x03\x04").is_err());
    }
}
