//! A 50 MB chunked upload streamed from a generator, and its download compared by hash.

use std::sync::{Arc, Mutex};

use md5::Md5;
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::common::*;

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 50 * 1024 * 1024;

/// Deterministic bytes: xorshift64 from a seed, chunk `i` of the stream.
fn chunk(i: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[tokio::test]
async fn fifty_mb_chunked_upload_round_trips_byte_identical() {
    let env = start().await;
    env.create_bucket("b", false).await;

    let hashes = Arc::new(Mutex::new((Sha256::new(), Md5::new())));
    let h = hashes.clone();
    let stream = futures_util::stream::iter(0..TOTAL / CHUNK).map(move |i| {
        let c = chunk(i);
        let mut g = h.lock().unwrap();
        g.0.update(&c);
        g.1.update(&c);
        Ok::<_, std::io::Error>(c)
    });
    let r = env
        .req(
            Method::POST,
            "/object/b/models/t/model.glb",
            Some(&env.service),
        )
        .header("content-type", "model/gltf-binary")
        .body(reqwest::Body::wrap_stream(stream)) // no Content-Length: chunked
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await["Key"], "b/models/t/model.glb");
    let (sha, md5) = {
        let g = hashes.lock().unwrap();
        (hex(&g.0.clone().finalize()), hex(&g.1.clone().finalize()))
    };

    let r = env
        .get(Some(&env.service), "/object/b/models/t/model.glb")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], TOTAL.to_string().as_str());
    assert_eq!(r.headers()["etag"], format!("\"{md5}\"").as_str());
    let mut down = Sha256::new();
    let mut n = 0usize;
    let mut body = r.bytes_stream();
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        n += c.len();
        down.update(&c);
    }
    assert_eq!(n, TOTAL);
    assert_eq!(hex(&down.finalize()), sha);
    assert_eq!(std::fs::read_dir(env.tmp_dir()).unwrap().count(), 0);
    env.gw.stop().await;
}

use futures_util::StreamExt;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
