//! The storage backend: buckets and object metadata in memory (they live as long as the
//! process), object bytes on disk under the storage root.
//!
//! Layout: `tmp/<uuid>.part` while an upload streams in; `data/<version uuid>` once committed
//! (a rename, so readers never see a partial object). An overwrite writes a new version file and
//! swaps the metadata under the lock; a reader that already opened the old file keeps reading it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use uuid::Uuid;

use super::errors::StorageError;
use crate::util::iso8601;

/// A bucket row (`storage.buckets`).
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub id: String,
    pub public: bool,
    pub file_size_limit: Option<u64>,
    pub allowed_mime_types: Option<Vec<String>>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Bucket {
    pub(crate) fn new(
        id: String,
        public: bool,
        file_size_limit: Option<u64>,
        allowed_mime_types: Option<Vec<String>>,
    ) -> Bucket {
        let now = SystemTime::now();
        Bucket {
            id,
            public,
            file_size_limit,
            allowed_mime_types,
            created_at: now,
            updated_at: now,
        }
    }

    /// `GET /bucket/{id}` shape; `GET /bucket` adds `"type":"STANDARD"`.
    pub(crate) fn to_json(&self, with_type: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.id,
            "owner": "",
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": self.allowed_mime_types,
            "created_at": iso8601(self.created_at),
            "updated_at": iso8601(self.updated_at),
        });
        if let (true, Some(obj)) = (with_type, v.as_object_mut()) {
            obj.insert("type".into(), Value::String("STANDARD".into()));
        }
        v
    }

    /// Whether the bucket's `allowed_mime_types` (exact types or `type/*`) admit `mime`.
    pub(crate) fn allows_mime(&self, mime: &str) -> bool {
        let Some(allowed) = &self.allowed_mime_types else {
            return true;
        };
        if allowed.is_empty() {
            return true;
        }
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            match a.strip_suffix("/*") {
                Some(top) => essence.split_once('/').is_some_and(|(t, _)| t == top),
                None => a == essence,
            }
        })
    }
}

/// An object row (`storage.objects`) plus where its bytes are.
#[derive(Debug, Clone)]
pub(crate) struct ObjectMeta {
    pub id: Uuid,
    pub version: Uuid,
    pub bucket: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub cache_control: String,
    /// MD5 of the bytes, lower-case hex, without quotes.
    pub md5: String,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub owner: Option<String>,
    pub user_metadata: Option<Value>,
    data: PathBuf,
}

impl ObjectMeta {
    /// The `etag` header value: `"<md5>"`.
    pub(crate) fn etag(&self) -> String {
        format!("\"{}\"", self.md5)
    }

    /// `storage.objects.metadata`, as the list and row answers carry it.
    fn storage_metadata(&self) -> Value {
        json!({
            "eTag": self.etag(),
            "size": self.size,
            "mimetype": self.content_type,
            "cacheControl": self.cache_control,
            "lastModified": iso8601(self.updated_at),
            "contentLength": self.size,
            "httpStatusCode": 200,
        })
    }

    /// `GET /object/info/...`.
    pub(crate) fn info_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "bucket_id": self.bucket,
            "size": self.size,
            "content_type": self.content_type,
            "cache_control": self.cache_control,
            "etag": self.etag(),
            "metadata": self.user_metadata.clone().unwrap_or_else(|| json!({})),
            "last_modified": iso8601(self.updated_at),
            "created_at": iso8601(self.created_at),
        })
    }

    /// A file entry of `POST /object/list`, named relative to the listed folder.
    pub(crate) fn list_json(&self, relative_name: &str) -> Value {
        json!({
            "name": relative_name,
            "id": self.id,
            "updated_at": iso8601(self.updated_at),
            "created_at": iso8601(self.created_at),
            "last_accessed_at": iso8601(self.updated_at),
            "metadata": self.storage_metadata(),
        })
    }

    /// The full row, as bulk delete and copy return it.
    pub(crate) fn row_json(&self) -> Value {
        json!({
            "bucket_id": self.bucket,
            "name": self.name,
            "owner": self.owner.clone().unwrap_or_default(),
            "owner_id": self.owner,
            "id": self.id,
            "version": self.version,
            "updated_at": iso8601(self.updated_at),
            "created_at": iso8601(self.created_at),
            "last_accessed_at": iso8601(self.updated_at),
            "metadata": self.storage_metadata(),
            "user_metadata": self.user_metadata,
        })
    }
}

/// What the caller says about a new object; the store adds size, MD5 and ids.
#[derive(Debug, Clone)]
pub(crate) struct NewObject {
    pub content_type: String,
    pub cache_control: String,
    pub owner: Option<String>,
    pub user_metadata: Option<Value>,
}

/// A file that is removed when dropped, unless kept.
pub(crate) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An upload streaming into a temp file, counting and hashing as it goes.
pub(crate) struct Upload {
    file: BufWriter<File>,
    md5: Md5,
    size: u64,
    limit: u64,
    temp: TempFile,
}

/// A complete upload, not yet visible.
pub(crate) struct Finished {
    temp: TempFile,
    pub size: u64,
    md5: String,
}

impl Upload {
    /// Appends a chunk; `EntityTooLarge` (and the temp file is deleted on drop) past the limit.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(StorageError::entity_too_large());
        }
        self.md5.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> Result<Finished, StorageError> {
        self.file.flush().await?;
        self.file.get_mut().sync_data().await.ok();
        let md5 = hex(&self.md5.finalize_reset());
        Ok(Finished {
            temp: self.temp,
            size: self.size,
            md5,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, Bucket>,
    objects: BTreeMap<(String, String), ObjectMeta>,
}

pub(crate) struct Store {
    tmp_dir: PathBuf,
    data_dir: PathBuf,
    state: Mutex<State>,
}

impl Store {
    pub(crate) async fn open(root: &Path) -> std::io::Result<Store> {
        let tmp_dir = root.join("tmp");
        let data_dir = root.join("data");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        tokio::fs::create_dir_all(&data_dir).await?;
        Ok(Store {
            tmp_dir,
            data_dir,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- buckets ----

    pub(crate) fn create_bucket(&self, bucket: Bucket) -> Result<(), StorageError> {
        let mut st = self.state();
        if st.buckets.contains_key(&bucket.id) {
            return Err(StorageError::bucket_already_exists());
        }
        st.buckets.insert(bucket.id.clone(), bucket);
        Ok(())
    }

    pub(crate) fn bucket(&self, id: &str) -> Option<Bucket> {
        self.state().buckets.get(id).cloned()
    }

    pub(crate) fn buckets(&self) -> Vec<Bucket> {
        self.state().buckets.values().cloned().collect()
    }

    pub(crate) fn delete_bucket(&self, id: &str) -> Result<(), StorageError> {
        let mut st = self.state();
        if !st.buckets.contains_key(id) {
            return Err(StorageError::no_such_bucket());
        }
        if st.objects.keys().any(|(b, _)| b == id) {
            return Err(StorageError::bucket_not_empty());
        }
        st.buckets.remove(id);
        Ok(())
    }

    // ---- objects ----

    /// Starts an upload into a new temp file.
    pub(crate) async fn begin_upload(&self, limit: u64) -> Result<Upload, StorageError> {
        let path = self.tmp_dir.join(format!("{}.part", Uuid::new_v4()));
        let file = File::create(&path).await?;
        Ok(Upload {
            file: BufWriter::with_capacity(256 * 1024, file),
            md5: Md5::new(),
            size: 0,
            limit,
            temp: TempFile { path, keep: false },
        })
    }

    /// Copies an object's bytes into a finished upload (for `POST /object/copy`).
    pub(crate) async fn duplicate(&self, src: &ObjectMeta) -> Result<Finished, StorageError> {
        let path = self.tmp_dir.join(format!("{}.part", Uuid::new_v4()));
        let temp = TempFile { path, keep: false };
        match tokio::fs::copy(&src.data, &temp.path).await {
            Ok(_) => Ok(Finished {
                temp,
                size: src.size,
                md5: src.md5.clone(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::no_such_key()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes a finished upload visible as `bucket/name`. An overwrite (`upsert`) keeps the
    /// object's `id` and `created_at`; without `upsert` an existing object is `KeyAlreadyExists`.
    pub(crate) async fn commit(
        &self,
        bucket: &str,
        name: &str,
        upload: Finished,
        new: NewObject,
        upsert: bool,
    ) -> Result<ObjectMeta, StorageError> {
        let version = Uuid::new_v4();
        let data = self.data_dir.join(version.to_string());
        let Finished {
            mut temp,
            size,
            md5,
        } = upload;
        tokio::fs::rename(&temp.path, &data).await?;
        temp.keep = true;
        let mut data_guard = TempFile {
            path: data.clone(),
            keep: false,
        };
        let now = SystemTime::now();
        let (meta, replaced) = {
            let mut st = self.state();
            if !st.buckets.contains_key(bucket) {
                return Err(StorageError::no_such_bucket());
            }
            let key = (bucket.to_string(), name.to_string());
            let existing = st.objects.get(&key);
            if existing.is_some() && !upsert {
                return Err(StorageError::key_already_exists());
            }
            let meta = ObjectMeta {
                id: existing.map_or_else(Uuid::new_v4, |e| e.id),
                version,
                bucket: bucket.to_string(),
                name: name.to_string(),
                size,
                content_type: new.content_type,
                cache_control: new.cache_control,
                md5,
                created_at: existing.map_or(now, |e| e.created_at),
                updated_at: now,
                owner: new.owner,
                user_metadata: new.user_metadata,
                data,
            };
            let replaced = st.objects.insert(key, meta.clone());
            (meta, replaced)
        };
        data_guard.keep = true;
        if let Some(old) = replaced {
            let _ = tokio::fs::remove_file(&old.data).await;
        }
        Ok(meta)
    }

    pub(crate) fn object(&self, bucket: &str, name: &str) -> Option<ObjectMeta> {
        self.state()
            .objects
            .get(&(bucket.to_string(), name.to_string()))
            .cloned()
    }

    /// The object's metadata and an open handle on its bytes.
    pub(crate) async fn open_object(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<(ObjectMeta, File), StorageError> {
        // An overwrite between the lookup and the open removes the old file: look again.
        for _ in 0..3 {
            let meta = self
                .object(bucket, name)
                .ok_or_else(StorageError::no_such_key)?;
            match File::open(&meta.data).await {
                Ok(f) => return Ok((meta, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::no_such_key())
    }

    /// Removes an object; `None` if there was none.
    pub(crate) async fn delete(&self, bucket: &str, name: &str) -> Option<ObjectMeta> {
        let removed = self
            .state()
            .objects
            .remove(&(bucket.to_string(), name.to_string()));
        if let Some(m) = &removed {
            let _ = tokio::fs::remove_file(&m.data).await;
        }
        removed
    }

    /// Renames an object, keeping its id and bytes.
    pub(crate) fn rename(
        &self,
        bucket: &str,
        from: &str,
        to_bucket: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        let mut st = self.state();
        if !st.buckets.contains_key(to_bucket) {
            return Err(StorageError::no_such_bucket());
        }
        let dest = (to_bucket.to_string(), to.to_string());
        if st.objects.contains_key(&dest) {
            return Err(StorageError::key_already_exists());
        }
        let mut meta = st
            .objects
            .remove(&(bucket.to_string(), from.to_string()))
            .ok_or_else(StorageError::no_such_key)?;
        meta.bucket = to_bucket.to_string();
        meta.name = to.to_string();
        meta.updated_at = SystemTime::now();
        st.objects.insert(dest, meta);
        Ok(())
    }

    /// Every object of `bucket` whose name starts with `prefix`, in name order.
    pub(crate) fn with_prefix(&self, bucket: &str, prefix: &str) -> Vec<ObjectMeta> {
        let st = self.state();
        st.objects
            .range((bucket.to_string(), prefix.to_string())..)
            .take_while(|((b, n), _)| b == bucket && n.starts_with(prefix))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_patterns() {
        let mut b = Bucket::new("b".into(), false, None, None);
        assert!(b.allows_mime("anything/at-all"));
        b.allowed_mime_types = Some(vec!["image/*".into(), "model/gltf-binary".into()]);
        assert!(b.allows_mime("image/png"));
        assert!(b.allows_mime("IMAGE/JPEG; charset=binary"));
        assert!(b.allows_mime("model/gltf-binary"));
        assert!(!b.allows_mime("text/plain"));
    }
}
