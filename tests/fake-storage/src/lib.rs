//! Test-only Supabase look-alike for `makeit3d-bff`, never compiled into the worker.
//!
//! [`Gateway`] is one loopback port that acts like a Supabase project URL:
//!
//! * `/rest/v1/*`: Kong-style key-auth (`apikey` header or `?apikey=` must be the anon or the
//!   service key; it is removed before forwarding), then a streaming reverse proxy to a real
//!   PostgREST. The URI after `/rest/v1` is forwarded byte for byte.
//! * `/storage/v1/*`: an in-process Supabase Storage API as `shared/reference/supabase-http.md`
//!   §2 records it (every 4xx is HTTP 400 with the real status as a string in the body).
//!   Objects stream to and from disk under `storage_root`; metadata lives in memory.
//!   `Authorization` takes HS256 tokens (project secret) and ES256 / RS256 user tokens signed
//!   with the gateway's [`SigningKeys`] (the JWKS below), as Storage does with a project's JWKS.
//!   Permissions emulate a new project plus the owner-folder policies of
//!   `migrations/0002_input_storage_policies.sql` on [`GatewayConfig::owner_folder_buckets`]:
//!   `service_role` may do everything; anyone with a valid JWT may read public buckets (and
//!   anyone at all through `/object/public/…`); an `authenticated` user may read, write, list
//!   and sign objects whose first folder is their `sub` in an owner-folder bucket; nothing else.
//!   A read refused by policy answers exactly like a missing object (`NoSuchKey`).
//! * `/__fake/storage/faults` (`POST` a [`FaultSpec`], `DELETE` to clear) and
//!   `/__fake/storage/log?path_prefix=…[&method=…]` (a JSON array of [`LogEntry`]): fault
//!   injection and the request log of the storage routes, for tests. No auth.
//! * `/__fake/rest/faults` (`POST` a [`RestFaultSpec`], `DELETE` to clear) and
//!   `/__fake/rest/log?path_prefix=…[&contains=…][&method=…]` (a JSON array of [`RestLogEntry`]):
//!   the same for `/rest/v1`. Faults apply after key-auth and answer with PostgREST's error shape
//!   (`{"code":"PGRST000",…,"message":"injected fault"}`) without reaching PostgREST;
//!   `match_body` restricts a rule to requests whose body contains a substring (such requests are
//!   buffered), `contains` filters the log by the first 2 KiB of the body. Headers and `apikey`
//!   query parameters are never logged. No auth.
//! * `/__fake/storage/chaos`, `/__fake/rest/chaos` (`POST` a `chaos::ChaosSpec`, `DELETE`, `GET`)
//!   and `/__fake/outage`: seeded random faults on either service, and timed outages (see
//!   `src/chaos.rs` for how each kind mimics the real services). No auth; never faulted.
//! * `/auth/v1/.well-known/jwks.json`: the public keys of the gateway's [`SigningKeys`] (ES256 and
//!   RS256; no `apikey` needed; `cache-control: public, max-age=600`). [`Gateway::keys`] mints
//!   tokens with them. `POST /__fake/auth/rotate` rotates the ES256 key (`{"kid": new}`),
//!   `POST /__fake/auth/revoke?kid=…` unpublishes an old one, and `GET /__fake/auth/jwks-hits`
//!   (`{"hits": n}`) counts JWKS requests. No auth.
//! * anything else: 404 `{"message":"no Route matched with those values"}`.
//!
//! Known differences from the real services:
//! * `POST /object/list` filters by the read rule above (the real server applies RLS `select`
//!   policies, so with no policies only the service role lists anything).
//! * Deleting an object the caller may not delete answers `NoSuchKey`, as RLS makes it
//!   invisible (the real behaviour); uploads there answer `403 AccessDenied`.
//! * An ES256 / RS256 token whose `kid` is not published (another project's, or revoked) is
//!   refused with `AccessDenied` "signature verification failed"; the real server falls back to the
//!   HS256 secret there and jose words the failure differently.
//! * Over-limit uploads get Storage's JSON `413` (as HTTP 400), never a proxy's HTML 413.
//! * No TUS resumable uploads, signed upload URLs, image transformation or S3 protocol.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_storage::{Gateway, GatewayConfig};
//! let gw = Gateway::start(GatewayConfig::default()).await?;
//! println!("SUPABASE_URL={}", gw.url());
//! gw.stop().await;
//! # Ok(()) }
//! ```

mod chaos;
mod control;
mod gateway;
mod jwks;
pub mod jwt;
pub mod keys;
mod proxy;
mod rest_control;
mod storage;
mod util;

pub use control::{FaultSpec, LogEntry};
pub use gateway::{Gateway, GatewayConfig, DEFAULT_INPUT_BUCKET, DEFAULT_JWT_SECRET};
pub use keys::SigningKeys;
pub use rest_control::{RestFaultSpec, RestLogEntry};
