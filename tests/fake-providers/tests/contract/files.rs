//! Contract tests of the output files (`/__fake/files/...`): GLB validity, size, determinism,
//! streaming of large models, ranges, expiry.

use std::time::Duration;

use fake_providers::{
    glb_bytes, glb_bytes_len, glb_chunk, glb_info, glb_sha256_hex, model_seed, ImageFormat,
};
use futures_util::StreamExt;
use serde_json::json;

use crate::common::*;

/// Creates an instant task with `directive`; returns (task id, output data).
async fn done_task(f: &fake_providers::Fakes, directive: &str) -> (String, serde_json::Value) {
    let prompt = format!("x [[fake:queue_s=0,run_s=0,{directive}]]");
    let id = create(f, json!({"type": "text_to_model", "prompt": prompt})).await;
    let d = wait_done(f, &id, Duration::from_secs(5)).await;
    assert_eq!(d["status"], "success", "{d}");
    (id, d)
}

#[tokio::test]
async fn model_is_a_valid_glb_of_the_requested_size() {
    let f = start().await;
    let (id, d) = done_task(&f, "glb_bytes=100001").await;
    let url = d["output"]["pbr_model"].as_str().unwrap();
    let (status, h, bytes) = download(url).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "model/gltf-binary");
    assert_eq!(
        header(&h, "content-length"),
        glb_bytes_len(100_001).to_string()
    );
    assert_eq!(bytes.len() as u64, glb_bytes_len(100_001));
    assert_eq!(bytes.len(), 100_004);
    // Header and chunks, parsed by hand.
    assert_eq!(&bytes[0..4], b"glTF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
        bytes.len()
    );
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(&bytes[16..20], b"JSON");
    let doc: serde_json::Value = serde_json::from_slice(&bytes[20..20 + json_len]).unwrap();
    let bin_at = 20 + json_len;
    let bin_len = u32::from_le_bytes(bytes[bin_at..bin_at + 4].try_into().unwrap()) as usize;
    assert_eq!(&bytes[bin_at + 4..bin_at + 8], b"BIN\0");
    assert_eq!(bin_at + 8 + bin_len, bytes.len());
    assert_eq!(doc["buffers"][0]["byteLength"], bin_len);
    assert_eq!(doc["asset"]["version"], "2.0");
    // A textured cube: 24 vertices, the first a corner of the +X face; an embedded PNG.
    assert_eq!(doc["accessors"][0]["count"], 24);
    let first_vertex: Vec<f32> = bytes[bin_at + 8..bin_at + 20]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(first_vertex, [0.5, -0.5, 0.5]);
    assert_eq!(doc["images"][0]["mimeType"], "image/png");
    let png_at = bin_at + 8 + doc["bufferViews"][4]["byteOffset"].as_u64().unwrap() as usize;
    assert_eq!(&bytes[png_at..png_at + 8], b"\x89PNG\r\n\x1a\n");
    // The pure functions agree byte for byte.
    let seed = model_seed(&id, "pbr_model");
    let info = glb_info(&bytes).unwrap();
    assert_eq!(info.seed.as_deref(), Some(seed.as_str()));
    assert_eq!(info.total_len, bytes.len() as u64);
    assert_eq!(bytes, glb_bytes(&seed, 100_001));
    assert_eq!(sha256_hex(&bytes), glb_sha256_hex(&seed, 100_001));
    f.stop().await;
}

#[tokio::test]
async fn default_size_and_distinct_seeds() {
    let f = start().await;
    let (a, da) = done_task(&f, "nonce=a").await;
    let (_, db) = done_task(&f, "nonce=b").await;
    let (_, _, ba) = download(da["output"]["pbr_model"].as_str().unwrap()).await;
    let (_, _, bb) = download(db["output"]["pbr_model"].as_str().unwrap()).await;
    assert_eq!(ba.len() as u64, fake_providers::DEFAULT_GLB_BYTES);
    assert_eq!(ba.len(), bb.len());
    assert_ne!(ba, bb);
    assert_eq!(
        ba,
        glb_bytes(
            &model_seed(&a, "pbr_model"),
            fake_providers::DEFAULT_GLB_BYTES
        )
    );
    // Same file twice: identical.
    let (_, _, again) = download(da["output"]["pbr_model"].as_str().unwrap()).await;
    assert_eq!(ba, again);
    // The preview is a real WebP.
    let (status, h, webp) = download(da["output"]["rendered_image"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "image/webp");
    assert_eq!(ImageFormat::sniff(&webp), Some(ImageFormat::Webp));
    f.stop().await;
}

#[tokio::test]
async fn large_model_streams_with_content_length() {
    let f = start().await;
    let size: u64 = 320 * 1024 * 1024;
    let (id, d) = done_task(&f, &format!("glb_bytes={size}")).await;
    let url = d["output"]["pbr_model"].as_str().unwrap();
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(size));
    let seed = model_seed(&id, "pbr_model");
    let mut stream = resp.bytes_stream();
    let mut total: u64 = 0;
    let mut head = Vec::new();
    let mut tail = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        if head.len() < 4096 {
            head.extend_from_slice(&piece[..piece.len().min(4096 - head.len())]);
        }
        total += piece.len() as u64;
        if total > size - 4096 {
            tail.extend_from_slice(&piece);
        }
    }
    assert_eq!(total, size);
    assert_eq!(glb_info(&head).unwrap().total_len, size);
    assert_eq!(head, glb_chunk(&seed, size, 0, 4096));
    let tail = &tail[tail.len() - 4096..];
    assert_eq!(tail, glb_chunk(&seed, size, size - 4096, 4096).as_slice());
    f.stop().await;
}

#[tokio::test]
async fn ranges_and_head() {
    let f = start().await;
    let (id, d) = done_task(&f, "glb_bytes=10000").await;
    let url = d["output"]["pbr_model"].as_str().unwrap();
    let seed = model_seed(&id, "pbr_model");
    let resp = client()
        .get(url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        header(resp.headers(), "content-range"),
        "bytes 100-199/10000"
    );
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        glb_chunk(&seed, 10_000, 100, 100)
    );
    let resp = client()
        .get(url)
        .header("range", "bytes=-16")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        glb_chunk(&seed, 10_000, 9984, 16)
    );
    let resp = client()
        .get(url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(header(resp.headers(), "content-range"), "bytes */10000");
    let resp = client().head(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(resp.headers(), "content-length"), "10000");
    f.stop().await;
}

#[tokio::test]
async fn urls_expire_and_unknown_files_are_404() {
    let f = start().await;
    let (id, d) = done_task(&f, "url_ttl_s=1").await;
    let url = d["output"]["pbr_model"].as_str().unwrap().to_string();
    let (status, _, _) = download(&url).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, h, body) = download(&url).await;
    assert_eq!(status, 403);
    assert_eq!(header(&h, "content-type"), "application/xml");
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("<Code>AccessDenied</Code>") && text.contains("expired"),
        "{text}"
    );
    // Re-querying the task gives fresh URLs.
    let (_, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
    let fresh = v["data"]["output"]["pbr_model"].as_str().unwrap();
    assert_ne!(fresh, url);
    assert_eq!(download(fresh).await.0, 200);
    // Default TTL is 300 s.
    let (_, d) = done_task(&f, "nonce=ttl").await;
    let u = d["output"]["pbr_model"].as_str().unwrap();
    let exp: u64 = u.rsplit("expires=").next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 295..=now + 301).contains(&exp), "{exp} vs {now}");
    let base = f.base_url();
    let no_expires = format!("{base}/__fake/files/{id}/pbr_model.glb");
    assert_eq!(download(&no_expires).await.0, 403);
    let far = now + 1000;
    assert_eq!(
        download(&format!("{base}/__fake/files/{id}/model.glb?expires={far}"))
            .await
            .0,
        404
    );
    assert_eq!(
        download(&format!(
            "{base}/__fake/files/{id}/secrets.txt?expires={far}"
        ))
        .await
        .0,
        404
    );
    assert_eq!(
        download(&format!(
            "{base}/__fake/files/{}/pbr_model.glb?expires={far}",
            uuid::Uuid::new_v4()
        ))
        .await
        .0,
        404
    );
    // Not downloadable before success.
    let running = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:queue_s=60]]"}),
    )
    .await;
    assert_eq!(
        download(&format!(
            "{base}/__fake/files/{running}/pbr_model.glb?expires={far}"
        ))
        .await
        .0,
        404
    );
    f.stop().await;
}

#[tokio::test]
async fn slow_ms_applies_to_downloads_and_downloads_are_logged() {
    let f = start().await;
    let n = nonce();
    let (id, d) = done_task(&f, &format!("slow_ms=300,nonce={n}")).await;
    let t = std::time::Instant::now();
    let (status, _, bytes) = download(d["output"]["pbr_model"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let entries = log(&f, &n).await;
    let dl: Vec<_> = entries
        .iter()
        .filter(|e| e["path"].as_str().unwrap().starts_with("/__fake/files/"))
        .collect();
    assert_eq!(dl.len(), 1, "{entries:?}");
    assert_eq!(dl[0]["provider"], "tripo");
    assert_eq!(dl[0]["tripo_task_id"], id.as_str());
    assert_eq!(dl[0]["status"], 200);
    assert_eq!(
        sha256_hex(&bytes),
        glb_sha256_hex(
            &model_seed(&id, "pbr_model"),
            fake_providers::DEFAULT_GLB_BYTES
        )
    );
    f.stop().await;
}
