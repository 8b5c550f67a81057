//! A Durable Object's one record (the task object's `TaskState`, the gate's `Record`): stored as
//! JSON text under one key and kept in the instance after the first read.
//!
//! Why text: `Storage::get`/`put` of a Rust value go through `serde_wasm_bindgen`, which builds or
//! walks a JS object graph one field at a time across the WebAssembly boundary; a string crosses
//! once and `serde_json` does the rest inside WebAssembly. Why the cache: an object's storage is
//! written only through its one live instance, so after the first read the instance already
//! holds what storage holds — every later command skips the read and its deserialization. The
//! cache changes only after a write succeeded, so a failed write leaves both as they were.
//! Records stored as objects by an earlier build are still read (and rewritten as text).

use std::cell::RefCell;
use std::rc::Rc;

use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Result, Storage};

/// The JSON text of a value that `Storage::put` of a Rust value stored (`serde_wasm_bindgen`'s
/// default shapes: structs as objects, maps as `Map`s, `None` as `undefined`): `JSON.stringify`
/// with every `Map` turned into an object, which `serde_json` reads as the record's own JSON.
pub fn object_json(value: &JsValue) -> Result<String> {
    let replacer = Closure::<dyn FnMut(JsValue, JsValue) -> JsValue>::new(|_key, v: JsValue| {
        if v.is_instance_of::<js_sys::Map>() {
            js_sys::Object::from_entries(&v).map_or(v, JsValue::from)
        } else {
            v
        }
    });
    let text = js_sys::JSON::stringify_with_replacer(value, replacer.as_ref().unchecked_ref())
        .map_err(worker::Error::from)?;
    text.as_string()
        .ok_or_else(|| worker::Error::RustError("a stored record with no JSON form".into()))
}

/// What the instance knows of the record.
enum Cached<T> {
    /// Not read from storage yet.
    Unread,
    /// Read or written: what storage holds (`None`: nothing).
    Known(Option<T>),
}

/// One record under `key`, with its cached copy.
pub struct Record<T> {
    key: &'static str,
    cache: RefCell<Cached<T>>,
    /// The JSON text of the cached record, as stored: a read that only passes the record on
    /// (the task object's `POST /state`) answers it without serializing again.
    text: RefCell<Option<Rc<str>>>,
}

impl<T: Serialize + DeserializeOwned + Clone> Record<T> {
    pub fn new(key: &'static str) -> Self {
        Self {
            key,
            cache: RefCell::new(Cached::Unread),
            text: RefCell::new(None),
        }
    }

    /// The record (a copy), read from storage only the first time.
    pub async fn get(&self, storage: &Storage) -> Result<Option<T>> {
        if let Cached::Known(known) = &*self.cache.borrow() {
            return Ok(known.clone());
        }
        let mut stored_text = None;
        let value = match storage.get::<String>(self.key).await {
            Ok(None) => None,
            Ok(Some(text)) => {
                let value = serde_json::from_str::<T>(&text)
                    .map_err(|e| worker::Error::RustError(format!("stored {}: {e}", self.key)))?;
                stored_text = Some(Rc::from(text));
                Some(value)
            }
            // Not text: an object written by an earlier build (read once, rewritten as text by
            // the next write), turned into JSON text in JavaScript ([`object_json`]) and parsed
            // like the rest. (Reading it with `storage.get::<T>` compiled the record's whole
            // deserializer a second time, for `serde_wasm_bindgen`: 23 KiB of the bundle.)
            Err(_) => {
                let raw = storage
                    .get_multiple(vec![self.key])
                    .await?
                    .get(&JsValue::from_str(self.key));
                if raw.is_undefined() {
                    None
                } else {
                    let text = object_json(&raw)?;
                    Some(serde_json::from_str::<T>(&text).map_err(|e| {
                        worker::Error::RustError(format!("stored {} (object): {e}", self.key))
                    })?)
                }
            }
        };
        // A write that finished while this read waited is newer: keep it.
        let mut cache = self.cache.borrow_mut();
        match &*cache {
            Cached::Known(newer) => Ok(newer.clone()),
            Cached::Unread => {
                *cache = Cached::Known(value.clone());
                // An object record's text is made at its next write.
                *self.text.borrow_mut() = stored_text;
                Ok(value)
            }
        }
    }

    /// Writes the record; the cache follows once storage has it. Returns the JSON text stored.
    pub async fn put(&self, storage: &Storage, value: &T) -> Result<Rc<str>> {
        let text = serde_json::to_string(value)
            .map_err(|e| worker::Error::RustError(format!("storing {}: {e}", self.key)))?;
        storage.put_raw(self.key, JsValue::from_str(&text)).await?;
        let text: Rc<str> = Rc::from(text);
        *self.cache.borrow_mut() = Cached::Known(Some(value.clone()));
        *self.text.borrow_mut() = Some(Rc::clone(&text));
        Ok(text)
    }

    /// The record's JSON text as stored (`None`: no record), read from storage only the first
    /// time; a record an earlier build stored as an object is serialized here once.
    pub async fn get_text(&self, storage: &Storage) -> Result<Option<Rc<str>>> {
        let Some(value) = self.get(storage).await? else {
            return Ok(None);
        };
        if let Some(text) = self.text.borrow().clone() {
            return Ok(Some(text));
        }
        let text = serde_json::to_string(&value)
            .map_err(|e| worker::Error::RustError(format!("storing {}: {e}", self.key)))?;
        Ok(Some(Rc::from(text)))
    }

    /// After the object's storage was deleted: the record is absent.
    pub fn forget(&self) {
        *self.cache.borrow_mut() = Cached::Known(None);
        *self.text.borrow_mut() = None;
    }
}
