//! Buckets, uploads, downloads, info, signed URLs, list, copy/move and delete.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn buckets_create_duplicate_get_list() {
    let env = start().await;
    let r = env
        .req(Method::POST, "/bucket", Some(&env.service))
        .json(&json!({"id": "makeit3d_app_assets", "name": "makeit3d_app_assets", "public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await, json!({"name": "makeit3d_app_assets"}));

    let r = env
        .req(Method::POST, "/bucket", Some(&env.service))
        .json(&json!({"id": "makeit3d_app_assets", "name": "makeit3d_app_assets", "public": true}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, "409", "BucketAlreadyExists").await;
    assert_eq!(
        body,
        json!({"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"BucketAlreadyExists"})
    );

    env.create_bucket("private_b", false).await;
    let b = json_ok(
        env.get(Some(&env.service), "/bucket/makeit3d_app_assets")
            .await,
    )
    .await;
    assert_eq!(b["id"], "makeit3d_app_assets");
    assert_eq!(b["name"], "makeit3d_app_assets");
    assert_eq!(b["owner"], "");
    assert_eq!(b["public"], true);
    assert_eq!(b["file_size_limit"], Value::Null);
    assert_eq!(b["allowed_mime_types"], Value::Null);
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(b.get("type").is_none());

    let list = json_ok(env.get(Some(&env.service), "/bucket").await).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|b| b["type"] == "STANDARD"));
    let private = list.iter().find(|b| b["id"] == "private_b").unwrap();
    assert_eq!(private["public"], false);

    let r = env.get(Some(&env.service), "/bucket/nope").await;
    expect_error(r, "404", "NoSuchBucket").await;
    let r = env
        .req(Method::POST, "/bucket", Some(&env.service))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, "400", "InvalidRequest").await;
    assert_eq!(body["message"], "body must have required property 'name'");
    env.gw.stop().await;
}

#[tokio::test]
async fn raw_and_multipart_uploads() {
    let env = start().await;
    env.create_bucket("assets", true).await;
    let r = env
        .upload(&env.service, "assets/concepts/task1/0.png", b"png-bytes")
        .await;
    let body = json_ok(r).await;
    assert_eq!(body["Key"], "assets/concepts/task1/0.png");
    assert_eq!(body["Id"].as_str().unwrap().len(), 36);

    // Multipart in storage-js's shape: `cacheControl` first, then a file part named "".
    let boundary = "----fakeboundary42";
    let mut mp = Vec::new();
    mp.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"cacheControl\"\r\n\r\n3600\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\n\
             Content-Type: image/webp\r\n\r\n"
        )
        .as_bytes(),
    );
    mp.extend_from_slice(b"RIFF\x00\x01webp\r\nbytes");
    mp.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = env
        .req(
            Method::POST,
            "/object/assets/inputs/u/a.webp",
            Some(&env.service),
        )
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(mp)
        .send()
        .await
        .unwrap();
    let body = json_ok(r).await;
    assert_eq!(body["Key"], "assets/inputs/u/a.webp");

    let r = env
        .get(Some(&env.service), "/object/assets/inputs/u/a.webp")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert_eq!(r.headers()["cache-control"], "max-age=3600");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        b"RIFF\x00\x01webp\r\nbytes"
    );

    // A multipart part named `file` works too; raw uploads keep their cache-control header.
    let mut mp = Vec::new();
    mp.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\
             Content-Type: image/png\r\n\r\nabc\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    let r = env
        .req(
            Method::POST,
            "/object/assets/inputs/u/b.png",
            Some(&env.service),
        )
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(mp)
        .send()
        .await
        .unwrap();
    json_ok(r).await;
    let info = json_ok(
        env.get(Some(&env.service), "/object/info/assets/inputs/u/b.png")
            .await,
    )
    .await;
    assert_eq!(info["size"], 3);
    assert_eq!(info["cache_control"], "no-cache");

    let r = env
        .req(Method::POST, "/object/assets/c.bin", Some(&env.service))
        .header("content-type", "application/octet-stream")
        .header("cache-control", "max-age=60")
        .body("zz")
        .send()
        .await
        .unwrap();
    json_ok(r).await;
    let r = env.get(None, "/object/public/assets/c.bin").await;
    assert_eq!(r.headers()["cache-control"], "max-age=60");

    // Upload to a missing bucket.
    let r = env.upload(&env.service, "nope/a.png", b"x").await;
    let body = expect_error(r, "404", "NoSuchBucket").await;
    assert_eq!(body["error"], "Bucket not found");
    assert_eq!(body["message"], "Bucket not found");
    env.gw.stop().await;
}

#[tokio::test]
async fn upsert_semantics_keep_the_id() {
    let env = start().await;
    env.create_bucket("b", false).await;
    let first = json_ok(env.upload(&env.service, "b/k/1.png", b"one").await).await;

    let r = env.upload(&env.service, "b/k/1.png", b"two").await;
    let body = expect_error(r, "409", "KeyAlreadyExists").await;
    assert_eq!(
        body,
        json!({"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"KeyAlreadyExists"})
    );
    let r = env
        .req(Method::POST, "/object/b/k/1.png", Some(&env.service))
        .header("x-upsert", "false")
        .body("two")
        .send()
        .await
        .unwrap();
    expect_error(r, "409", "KeyAlreadyExists").await;
    assert_eq!(
        env.get(Some(&env.service), "/object/b/k/1.png")
            .await
            .text()
            .await
            .unwrap(),
        "one"
    );

    let r = env
        .req(Method::POST, "/object/b/k/1.png", Some(&env.service))
        .header("x-upsert", "true")
        .body("two")
        .send()
        .await
        .unwrap();
    let second = json_ok(r).await;
    assert_eq!(second["Id"], first["Id"]);
    assert_eq!(
        env.get(Some(&env.service), "/object/b/k/1.png")
            .await
            .text()
            .await
            .unwrap(),
        "two"
    );

    // PUT: always an upsert, on an existing and on a missing object.
    let r = env
        .req(Method::PUT, "/object/b/k/1.png", Some(&env.service))
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await["Id"], first["Id"]);
    let r = env
        .req(Method::PUT, "/object/b/k/2.png", Some(&env.service))
        .body("new")
        .send()
        .await
        .unwrap();
    let put_new = json_ok(r).await;
    assert_eq!(put_new["Key"], "b/k/2.png");
    assert_ne!(put_new["Id"], first["Id"]);
    assert_eq!(
        env.get(Some(&env.service), "/object/b/k/1.png")
            .await
            .text()
            .await
            .unwrap(),
        "three"
    );
    // Only the live versions stay on disk.
    let data = std::fs::read_dir(env.dir.path().join("storage/data"))
        .unwrap()
        .count();
    assert_eq!(data, 2);
    env.gw.stop().await;
}

#[tokio::test]
async fn downloads_by_every_route_with_head_range_and_info() {
    let env = start().await;
    env.create_bucket("pub", true).await;
    env.create_bucket("priv", false).await;
    let content: Vec<u8> = (0u8..75).collect();
    let md5 = md5_hex(&content);
    json_ok(
        env.upload(&env.service, "pub/concepts/t/0.png", &content)
            .await,
    )
    .await;
    json_ok(
        env.upload(&env.service, "priv/concepts/t/0.png", &content)
            .await,
    )
    .await;

    for (token, path) in [
        (Some(env.service.as_str()), "/object/pub/concepts/t/0.png"),
        (
            Some(env.service.as_str()),
            "/object/authenticated/pub/concepts/t/0.png",
        ),
        (None, "/object/public/pub/concepts/t/0.png"),
        (
            Some(env.service.as_str()),
            "/object/authenticated/priv/concepts/t/0.png",
        ),
    ] {
        let r = env.get(token, path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "image/png", "{path}");
        assert_eq!(h["content-length"], "75", "{path}");
        assert_eq!(h["etag"], format!("\"{md5}\"").as_str(), "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert_eq!(h["x-robots-tag"], "none", "{path}");
        let lm = h["last-modified"].to_str().unwrap();
        assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");
        assert!(h.get("content-disposition").is_none());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &content[..], "{path}");
    }

    let r = env
        .get(
            None,
            "/object/public/pub/concepts/t/0.png?download=concept.png",
        )
        .await;
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=concept.png; filename*=UTF-8''concept.png"
    );
    let r = env
        .get(
            None,
            "/object/public/pub/concepts/t/0.png?download=my%20file.png",
        )
        .await;
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=my file.png; filename*=UTF-8''my%20file.png"
    );

    let r = env
        .http
        .head(env.url("/object/public/pub/concepts/t/0.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "75");
    assert_eq!(r.headers()["etag"], format!("\"{md5}\"").as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    let r = env
        .req(
            Method::GET,
            "/object/pub/concepts/t/0.png",
            Some(&env.service),
        )
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-9/75");
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &content[0..10]);
    let r = env
        .req(
            Method::GET,
            "/object/pub/concepts/t/0.png",
            Some(&env.service),
        )
        .header("range", "bytes=70-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes 70-74/75");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &content[70..]);
    let r = env
        .req(
            Method::GET,
            "/object/pub/concepts/t/0.png",
            Some(&env.service),
        )
        .header("range", "bytes=75-80")
        .send()
        .await
        .unwrap();
    expect_error(r, "400", "InvalidRange").await;

    let info = json_ok(
        env.get(Some(&env.service), "/object/info/pub/concepts/t/0.png")
            .await,
    )
    .await;
    assert_eq!(info["name"], "concepts/t/0.png");
    assert_eq!(info["bucket_id"], "pub");
    assert_eq!(info["size"], 75);
    assert_eq!(info["content_type"], "image/png");
    assert_eq!(info["cache_control"], "no-cache");
    assert_eq!(info["etag"], format!("\"{md5}\""));
    assert_eq!(info["metadata"], json!({}));
    for f in ["id", "version", "last_modified", "created_at"] {
        assert!(info[f].is_string(), "info.{f}: {info}");
    }

    // Missing object, missing bucket, private bucket on the public route.
    let r = env
        .get(Some(&env.service), "/object/pub/concepts/t/9.png")
        .await;
    let body = expect_error(r, "404", "NoSuchKey").await;
    assert_eq!(
        body,
        json!({"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"})
    );
    expect_error(
        env.get(None, "/object/public/pub/nope.png").await,
        "404",
        "NoSuchKey",
    )
    .await;
    expect_error(
        env.get(None, "/object/public/nobucket/a.png").await,
        "404",
        "NoSuchKey",
    )
    .await;
    expect_error(
        env.get(None, "/object/public/priv/concepts/t/0.png").await,
        "404",
        "NoSuchBucket",
    )
    .await;
    expect_error(
        env.get(Some(&env.service), "/object/info/pub/nope.png")
            .await,
        "404",
        "NoSuchKey",
    )
    .await;
    env.gw.stop().await;
}

#[tokio::test]
async fn percent_encoded_keys_and_dot_segments() {
    let env = start().await;
    env.create_bucket("b", true).await;
    let body = json_ok(
        env.upload(&env.service, "b/dir/with%20space.png", b"sp")
            .await,
    )
    .await;
    assert_eq!(body["Key"], "b/dir/with space.png");
    let list = json_ok(
        env.req(Method::POST, "/object/list/b", Some(&env.service))
            .json(&json!({"prefix": "dir"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list[0]["name"], "with space.png");
    let r = env.get(None, "/object/public/b/dir/with%20space.png").await;
    assert_eq!(r.text().await.unwrap(), "sp");

    let auth = format!("Bearer {}", env.service);
    for bad in [
        "b/a/%2E%2E/x.png",
        "b/a/../x.png",
        "b/..",
        "b/a//x.png",
        "b/a/./x.png",
    ] {
        let (status, text) = raw_request(
            "POST",
            &env.url(&format!("/object/{bad}")),
            &[("authorization", &auth)],
            "x",
        )
        .await;
        assert_eq!(status, 400, "{bad}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "InvalidKey", "{bad}: {body}");
        assert_eq!(body["statusCode"], "400");
    }
    let (status, _) = raw_request(
        "GET",
        &env.url("/object/public/b/dir/x/../with%20space.png"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 400);
    env.gw.stop().await;
}

#[tokio::test]
async fn signed_urls() {
    let env = start().await;
    env.create_bucket("priv", false).await;
    json_ok(
        env.upload(&env.service, "priv/models/t/model.glb", b"glTF-bytes")
            .await,
    )
    .await;

    let r = env
        .req(
            Method::POST,
            "/object/sign/priv/models/t/model.glb",
            Some(&env.service),
        )
        .json(&json!({"expiresIn": 60}))
        .send()
        .await
        .unwrap();
    let signed = json_ok(r).await["signedURL"].as_str().unwrap().to_string();
    assert!(
        signed.starts_with("/object/sign/priv/models/t/model.glb?token="),
        "{signed}"
    );
    let token = signed.split("token=").nth(1).unwrap();
    let claims = fake_storage::jwt::verify(token, SECRET, fake_storage::jwt::now_unix()).unwrap();
    assert_eq!(claims["url"], "priv/models/t/model.glb");
    let exp = claims["exp"].as_i64().unwrap() - fake_storage::jwt::now_unix();
    assert!((55..=61).contains(&exp), "exp in {exp}s");

    // Served without Authorization.
    let r = env.get(None, &signed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"glTF-bytes");

    // Wrong secret, expired, another path, no token.
    let forged = fake_storage::jwt::sign(
        &json!({"url": "priv/models/t/model.glb", "exp": fake_storage::jwt::now_unix() + 60}),
        "other-secret",
    );
    let r = env
        .get(
            None,
            &format!("/object/sign/priv/models/t/model.glb?token={forged}"),
        )
        .await;
    let body = expect_error(r, "400", "InvalidJWT").await;
    assert_eq!(body["message"], "signature verification failed");
    let expired = fake_storage::jwt::sign(
        &json!({"url": "priv/models/t/model.glb", "exp": fake_storage::jwt::now_unix() - 1}),
        SECRET,
    );
    let r = env
        .get(
            None,
            &format!("/object/sign/priv/models/t/model.glb?token={expired}"),
        )
        .await;
    let body = expect_error(r, "400", "InvalidJWT").await;
    assert_eq!(body["message"], "\"exp\" claim timestamp check failed");
    json_ok(
        env.upload(&env.service, "priv/models/t/other.glb", b"o")
            .await,
    )
    .await;
    let r = env
        .get(
            None,
            &format!("/object/sign/priv/models/t/other.glb?token={token}"),
        )
        .await;
    let body = expect_error(r, "400", "InvalidSignature").await;
    assert_eq!(body["message"], "The url do not match the signature");
    let r = env.get(None, "/object/sign/priv/models/t/model.glb").await;
    let body = expect_error(r, "400", "InvalidRequest").await;
    assert_eq!(
        body["message"],
        "querystring must have required property 'token'"
    );

    // Signing a missing object, and signing without expiresIn.
    let r = env
        .req(
            Method::POST,
            "/object/sign/priv/models/t/none.glb",
            Some(&env.service),
        )
        .json(&json!({"expiresIn": 60}))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;
    let r = env
        .req(
            Method::POST,
            "/object/sign/priv/models/t/model.glb",
            Some(&env.service),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(r, "400", "InvalidRequest").await;

    // Batch form.
    let r = env
        .req(Method::POST, "/object/sign/priv", Some(&env.service))
        .json(&json!({"expiresIn": 60, "paths": ["models/t/model.glb", "missing.glb"]}))
        .send()
        .await
        .unwrap();
    let batch = json_ok(r).await;
    assert_eq!(batch[0]["error"], Value::Null);
    assert!(batch[0]["signedURL"]
        .as_str()
        .unwrap()
        .starts_with("/object/sign/priv/models/t/model.glb?token="));
    assert_eq!(batch[1]["signedURL"], Value::Null);
    assert!(batch[1]["error"].is_string());
    env.gw.stop().await;
}

#[tokio::test]
async fn list_objects_and_folders() {
    let env = start().await;
    env.create_bucket("b", false).await;
    for k in [
        "concepts/task1/0.png",
        "concepts/task1/1.png",
        "concepts/task1/sub/x.png",
        "concepts/task2/0.png",
        "models/m.glb",
    ] {
        json_ok(
            env.upload(&env.service, &format!("b/{k}"), b"0123456789")
                .await,
        )
        .await;
    }
    let list = |body: Value| {
        let env = &env;
        async move {
            env.req(Method::POST, "/object/list/b", Some(&env.service))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let l = json_ok(
        list(json!({"prefix":"concepts/task1","limit":100,"offset":0,"sortBy":{"column":"name","order":"asc"}})).await,
    )
    .await;
    let names: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0.png", "1.png", "sub"]);
    let file = &l[0];
    assert!(file["id"].is_string());
    for f in ["updated_at", "created_at", "last_accessed_at"] {
        assert!(file[f].is_string(), "{f}");
    }
    let md = &file["metadata"];
    assert_eq!(md["size"], 10);
    assert_eq!(md["contentLength"], 10);
    assert_eq!(md["mimetype"], "image/png");
    assert_eq!(md["cacheControl"], "no-cache");
    assert_eq!(md["httpStatusCode"], 200);
    assert_eq!(md["eTag"], format!("\"{}\"", md5_hex(b"0123456789")));
    assert_eq!(
        l[2],
        json!({"name":"sub","id":null,"updated_at":null,"created_at":null,"last_accessed_at":null,"metadata":null})
    );

    let root = json_ok(list(json!({"prefix": ""})).await).await;
    let names: Vec<&str> = root
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["concepts", "models"]);
    let desc = json_ok(
        list(json!({"prefix": "concepts/", "sortBy": {"column": "name", "order": "desc"}})).await,
    )
    .await;
    assert_eq!(desc[0]["name"], "task2");
    let paged =
        json_ok(list(json!({"prefix": "concepts/task1", "limit": 1, "offset": 1})).await).await;
    assert_eq!(paged.as_array().unwrap().len(), 1);
    assert_eq!(paged[0]["name"], "1.png");
    let searched = json_ok(list(json!({"prefix": "concepts/task1", "search": "1"})).await).await;
    assert_eq!(searched.as_array().unwrap().len(), 1);
    assert_eq!(searched[0]["name"], "1.png");

    let body = expect_error(list(json!({"limit": 10})).await, "400", "InvalidRequest").await;
    assert_eq!(
        body,
        json!({"statusCode":"400","error":"Error","message":"body must have required property 'prefix'","code":"InvalidRequest"})
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn delete_one_twice_and_many() {
    let env = start().await;
    env.create_bucket("b", true).await;
    json_ok(env.upload(&env.service, "b/a/1.png", b"1").await).await;
    let r = env
        .req(Method::DELETE, "/object/b/a/1.png", Some(&env.service))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await, json!({"message": "Successfully deleted"}));
    expect_error(
        env.get(None, "/object/public/b/a/1.png").await,
        "404",
        "NoSuchKey",
    )
    .await;
    let r = env
        .req(Method::DELETE, "/object/b/a/1.png", Some(&env.service))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;

    for k in ["x/1.png", "x/2.png", "x/3.png"] {
        json_ok(env.upload(&env.service, &format!("b/{k}"), b"z").await).await;
    }
    let r = env
        .req(Method::DELETE, "/object/b", Some(&env.service))
        .json(&json!({"prefixes": ["x/1.png", "x/2.png", "x/nope.png"]}))
        .send()
        .await
        .unwrap();
    let rows = json_ok(r).await;
    let mut names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["x/1.png", "x/2.png"]);
    assert_eq!(rows[0]["bucket_id"], "b");
    assert!(rows[0]["id"].is_string());
    assert_eq!(
        env.get(None, "/object/public/b/x/3.png").await.status(),
        200
    );
    expect_error(
        env.get(None, "/object/public/b/x/2.png").await,
        "404",
        "NoSuchKey",
    )
    .await;
    let r = env
        .req(Method::DELETE, "/object/b", Some(&env.service))
        .json(&json!({"prefixes": []}))
        .send()
        .await
        .unwrap();
    expect_error(r, "400", "InvalidRequest").await;
    // The data file of deleted objects is gone too.
    assert_eq!(
        std::fs::read_dir(env.dir.path().join("storage/data"))
            .unwrap()
            .count(),
        1
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn copy_and_move() {
    let env = start().await;
    env.create_bucket("b", false).await;
    json_ok(env.upload(&env.service, "b/src/a.png", b"copy-me").await).await;
    let r = env
        .req(Method::POST, "/object/copy", Some(&env.service))
        .json(&json!({"bucketId": "b", "sourceKey": "src/a.png", "destinationKey": "dst/a.png"}))
        .send()
        .await
        .unwrap();
    let row = json_ok(r).await;
    assert_eq!(row["Key"], "b/dst/a.png");
    assert_eq!(row["name"], "dst/a.png");
    assert_eq!(row["metadata"]["mimetype"], "image/png");
    assert_eq!(
        env.get(Some(&env.service), "/object/b/dst/a.png")
            .await
            .text()
            .await
            .unwrap(),
        "copy-me"
    );

    let r = env
        .req(Method::POST, "/object/move", Some(&env.service))
        .json(&json!({"bucketId": "b", "sourceKey": "src/a.png", "destinationKey": "moved/a.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await, json!({"message": "Successfully moved"}));
    expect_error(
        env.get(Some(&env.service), "/object/b/src/a.png").await,
        "404",
        "NoSuchKey",
    )
    .await;
    assert_eq!(
        env.get(Some(&env.service), "/object/b/moved/a.png")
            .await
            .text()
            .await
            .unwrap(),
        "copy-me"
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn upload_limit_gives_413_and_leaves_no_temp_file() {
    let env = start_with(|c| c.upload_limit_bytes = 1024).await;
    env.create_bucket("b", false).await;
    let big = vec![7u8; 64 * 1024];

    // Declared by Content-Length.
    let r = env.upload(&env.service, "b/big.bin", &big).await;
    let body = expect_error(r, "413", "EntityTooLarge").await;
    assert_eq!(
        body,
        json!({"statusCode":"413","error":"Payload too large","message":"The object exceeded the maximum allowed size","code":"EntityTooLarge"})
    );

    // Chunked: found while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..16).map(|_| Ok(vec![1u8; 4096])).collect();
    let r = env
        .req(Method::POST, "/object/b/big2.bin", Some(&env.service))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    expect_error(r, "413", "EntityTooLarge").await;
    assert_eq!(
        std::fs::read_dir(env.tmp_dir()).unwrap().count(),
        0,
        "partial temp file left"
    );
    expect_error(
        env.get(Some(&env.service), "/object/b/big2.bin").await,
        "404",
        "NoSuchKey",
    )
    .await;

    // Exactly at the limit is fine.
    json_ok(env.upload(&env.service, "b/ok.bin", &big[..1024]).await).await;
    env.gw.stop().await;
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A browser page on another origin (the playground) can use the project: a preflight is
/// answered by the gateway, and answers to requests with `Origin` carry CORS headers, as
/// Supabase's Kong does. Requests without `Origin` are untouched.
#[tokio::test]
async fn cors_for_browser_pages() {
    let env = start().await;
    env.create_bucket("pub", true).await;
    let r = env
        .http
        .request(reqwest::Method::OPTIONS, env.url("/object/pub/a.png"))
        .header("origin", "http://127.0.0.1:8787")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, apikey, x-upsert",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "authorization, apikey, x-upsert"
    );
    let r = env
        .req(
            reqwest::Method::POST,
            "/object/pub/a.png",
            Some(&env.service),
        )
        .header("origin", "http://127.0.0.1:8787")
        .header("content-type", "image/png")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = env
        .http
        .get(env.url("/object/public/pub/a.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
