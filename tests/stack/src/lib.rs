//! The local stack of makeit3d-bff, started and stopped as one: a private
//! PostgreSQL 15 cluster with Supabase's roles and `auth` schema
//! (`sql/bootstrap.sql`) and our `migrations/`, the real PostgREST, the
//! Supabase-style gateway with its Storage API (`fake-storage`), and the
//! OpenAI / Tripo fakes (`fake-providers`). Everything listens on 127.0.0.1 on
//! free ports; state lives in one directory (a temp dir unless given).
//!
//! This module owns the [`Stack`] handle: start order, keys, buckets, users,
//! the `.dev.vars` / env-file contents, and stop. The pieces live in
//! [`postgres`], [`postgrest`], [`process`] and [`ports`].

pub mod error;
pub mod ports;
pub mod postgres;
pub mod postgrest;
pub mod process;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

pub use error::StackError;
use postgres::{PgInstall, Postgres};
use postgrest::{Postgrest, PostgrestConfig};

/// Supabase's bootstrap emulation, applied before the migrations.
pub const BOOTSTRAP_SQL: &str = include_str!("../sql/bootstrap.sql");
/// The public bucket for generated assets (SPEC §8 default).
pub const GENERATED_ASSETS_BUCKET: &str = "makeit3d_app_assets";
/// The user every request runs as under the worker's `AUTH_MODE=none` (equal to the worker's
/// `config::LOCAL_USER_ID`); the stack creates it in `auth.users`.
pub const LOCAL_USER_ID: &str = "00000000-0000-4000-8000-000000000001";
/// The private bucket clients upload their inputs to. `migrations/0002` installs the
/// owner-folder Storage policies on it (its default for the setting
/// `makeit3d.input_assets_bucket`), and the gateway's Storage enforces them on it.
pub const INPUT_BUCKET: &str = fake_storage::DEFAULT_INPUT_BUCKET;
/// Storage's global upload limit. The observed Supabase setup had 50 MB (the Free plan's
/// ceiling); models can be several hundred MB, so a deployment raises it (Pro plans allow it)
/// and the local stack does too: 1 GiB.
pub const UPLOAD_LIMIT_BYTES: u64 = 1 << 30;
/// Lifetime of the token [`Stack::create_user`] returns.
pub const USER_TOKEN_TTL_SECS: i64 = 3600;

/// The per-user limits of the stack's worker settings ([`Stack::worker_vars`]): on, and far
/// above what any tool on the stack submits (the largest value the worker accepts).
pub const GENEROUS_LIMIT: u32 = 100_000;

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the cluster, logs and stored objects live. `None`: a fresh temp
    /// dir, removed on stop. A given dir is kept, and reused by the next start
    /// (the cluster is not re-initialised; bootstrap and migrations run again).
    pub state_dir: Option<PathBuf>,
    /// The repository root: `migrations/` and `node_modules/` are found there.
    pub repo_root: PathBuf,
    /// Speed factor of the provider fakes' task timelines (1.0 = real time,
    /// 10.0 = ten times faster).
    pub time_scale: f64,
    /// The gateway's (the project URL's) port, e.g. 54321 as the Supabase CLI uses, so that a
    /// page or an app configured once keeps working. `None` (the default) or a port that is
    /// taken: a free port ([`Stack::preferred_port_taken`] says which happened).
    pub supabase_port: Option<u16>,
}

impl StackOptions {
    /// A temp-dir stack for the repository at `repo_root`, time scale 1.
    pub fn new(repo_root: impl Into<PathBuf>) -> Self {
        StackOptions {
            state_dir: None,
            repo_root: repo_root.into(),
            time_scale: 1.0,
            supabase_port: None,
        }
    }
}

impl Default for StackOptions {
    /// The repository this crate was compiled from (`tests/stack/../..`).
    fn default() -> Self {
        StackOptions::new(default_repo_root())
    }
}

/// The repository root this crate lives in.
pub fn default_repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The state directory: removed on drop when it is ours.
#[derive(Debug)]
enum StateDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temp(dir) => dir.path(),
            StateDir::Kept(path) => path,
        }
    }
}

/// A running local stack. [`Stack::stop`] ends everything; dropping it (or a
/// panic) also kills every child process and stops PostgreSQL.
pub struct Stack {
    /// The gateway, i.e. the project URL: `{supabase_url}/rest/v1`, `/storage/v1`.
    pub supabase_url: String,
    pub anon_key: String,
    pub service_key: String,
    pub jwt_secret: String,
    pub openai_base_url: String,
    pub openai_key: String,
    pub tripo_base_url: String,
    /// The Tripo v3 fake (`TRIPO_V3_BASE_URL`; used with `TRIPO_API_VERSION=v3`).
    pub tripo_v3_base_url: String,
    pub tripo_key: String,
    /// Public bucket for generated assets, created at start.
    pub bucket: String,
    /// Private bucket for client inputs, created at start.
    pub input_bucket: String,
    pub pg_port: u16,
    /// PostgREST itself (no gateway, no `/rest/v1` prefix).
    pub postgrest_url: String,
    /// `postgres://postgres@127.0.0.1:PORT/postgres` (superuser, trust auth).
    pub database_url: String,
    pub state_dir: PathBuf,
    /// How long [`Stack::start`] took.
    pub startup: Duration,
    /// [`StackOptions::supabase_port`] was asked for but taken, so the gateway is on a free
    /// port instead.
    pub preferred_port_taken: bool,
    repo_root: PathBuf,
    authenticator_password: String,
    // Drop order is declaration order: in-process servers, PostgREST, then
    // PostgreSQL, then the state dir.
    fakes: Option<fake_providers::Fakes>,
    gateway: Option<fake_storage::Gateway>,
    /// Behind a lock so that it can be stopped and started again on the same ports
    /// ([`Stack::stop_postgrest`], [`Stack::start_postgrest`]).
    postgrest: std::sync::Mutex<Postgrest>,
    postgrest_config: PostgrestConfig,
    postgres: Postgres,
    _state: StateDir,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("supabase_url", &self.supabase_url)
            .field("postgrest_url", &self.postgrest_url)
            .field("pg_port", &self.pg_port)
            .field("openai_base_url", &self.openai_base_url)
            .field("tripo_base_url", &self.tripo_base_url)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts PostgreSQL (bootstrap + migrations), PostgREST, the gateway with
    /// Storage (and creates both buckets) and the provider fakes.
    pub async fn start(opts: StackOptions) -> Result<Stack, StackError> {
        let started = Instant::now();
        if !opts.time_scale.is_finite() || opts.time_scale <= 0.0 {
            return Err(StackError::InvalidArgument(format!(
                "time_scale must be > 0, got {}",
                opts.time_scale
            )));
        }
        let repo_root = opts.repo_root.clone();
        let state = match &opts.state_dir {
            None => StateDir::Temp(
                tempfile::Builder::new()
                    .prefix("makeit3d-stack-")
                    .tempdir()
                    .map_err(|e| StackError::io("creating a temp state dir", e))?,
            ),
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StackError::io(format!("creating {}", dir.display()), e))?;
                let dir = dir
                    .canonicalize()
                    .map_err(|e| StackError::io(format!("resolving {}", dir.display()), e))?;
                StateDir::Kept(dir)
            }
        };
        let state_dir = state.path().to_path_buf();
        prepare_state_dir(&state_dir)?;

        let pg_install = PgInstall::locate_or_install().await?;
        let postgrest_bin = postgrest::locate_or_install(&repo_root).await?;

        let jwt_secret = random_secret();
        let authenticator_password = uuid::Uuid::new_v4().simple().to_string();
        let anon_key = fake_storage::jwt::anon_key(&jwt_secret);
        let service_key = fake_storage::jwt::service_role_key(&jwt_secret);
        let openai_key = format!("sk-stack-{}", uuid::Uuid::new_v4().simple());
        let tripo_key = format!("tsk_stack_{}", uuid::Uuid::new_v4().simple());

        // PostgreSQL first (the slow part), then the schema, then PostgREST, which
        // reads the schema cache at start. Ports are free when picked; another
        // process may take one before it is bound: then pick again.
        let pg_dir = state_dir.join("pg");
        let mut attempt = 0;
        let postgres = loop {
            let pg_port = ports::free_ports(1)?[0];
            match Postgres::start(pg_install.clone(), &pg_dir, pg_port).await {
                Err(e) if is_port_clash(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                started => break started?,
            }
        };
        let pg_port = postgres.port();
        postgres
            .psql_script(
                BOOTSTRAP_SQL,
                &[("authenticator_password", &authenticator_password)],
            )
            .await?;
        apply_migrations(&postgres, &repo_root).await?;

        let mut attempt = 0;
        let (postgrest, postgrest_config) = loop {
            let ports = ports::free_ports(2)?;
            let config = PostgrestConfig {
                binary: postgrest_bin.clone(),
                db_uri: format!(
                    "postgres://authenticator:{authenticator_password}@127.0.0.1:{pg_port}/postgres"
                ),
                jwt_secret: jwt_secret.clone(),
                port: ports[0],
                admin_port: ports[1],
                log_path: state_dir.join("logs").join("postgrest.log"),
            };
            match Postgrest::start(&config).await {
                Err(e) if is_port_clash(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                started => break (started?, config),
            }
        };
        let postgrest_url = postgrest.url().to_string();

        let fakes = fake_providers::Fakes::start(fake_providers::FakeConfig {
            listen: ports::loopback(0),
            openai_key: openai_key.clone(),
            tripo_key: tripo_key.clone(),
            time_scale: opts.time_scale,
        })
        .await
        .map_err(|e| StackError::Component {
            what: "provider fakes",
            message: e.to_string(),
        })?;

        let gateway_config = |port: u16| fake_storage::GatewayConfig {
            listen: ports::loopback(port),
            postgrest_url: postgrest_url.clone(),
            storage_root: state_dir.join("storage"),
            jwt_secret: jwt_secret.clone(),
            anon_key: anon_key.clone(),
            service_key: service_key.clone(),
            upload_limit_bytes: UPLOAD_LIMIT_BYTES,
            // The owner-folder policies that migrations/0002 installs on storage.objects.
            owner_folder_buckets: vec![INPUT_BUCKET.to_string()],
        };
        let mut preferred_port_taken = false;
        let mut gateway =
            fake_storage::Gateway::start(gateway_config(opts.supabase_port.unwrap_or(0))).await;
        if let (Some(_), Err(e)) = (opts.supabase_port, &gateway) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                preferred_port_taken = true;
                gateway = fake_storage::Gateway::start(gateway_config(0)).await;
            }
        }
        let gateway = match gateway {
            Ok(gateway) => gateway,
            Err(e) => {
                fakes.stop().await;
                return Err(StackError::Component {
                    what: "fake-storage gateway",
                    message: e.to_string(),
                });
            }
        };
        let supabase_url = gateway.url();

        let mut stack = Stack {
            database_url: postgres.superuser_url(),
            supabase_url,
            anon_key,
            service_key,
            jwt_secret,
            openai_base_url: fakes.openai_base_url(),
            openai_key,
            tripo_base_url: fakes.tripo_base_url(),
            tripo_v3_base_url: fakes.tripo_v3_base_url(),
            tripo_key,
            bucket: GENERATED_ASSETS_BUCKET.to_string(),
            input_bucket: INPUT_BUCKET.to_string(),
            pg_port,
            postgrest_url,
            state_dir,
            startup: Duration::ZERO,
            preferred_port_taken,
            repo_root,
            authenticator_password,
            fakes: Some(fakes),
            gateway: Some(gateway),
            postgrest: std::sync::Mutex::new(postgrest),
            postgrest_config,
            postgres,
            _state: state,
        };
        stack.create_bucket(GENERATED_ASSETS_BUCKET, true).await?;
        stack.create_bucket(INPUT_BUCKET, false).await?;
        stack.ensure_local_user().await?;
        stack.startup = started.elapsed();
        Ok(stack)
    }

    /// Creates a bucket through the gateway's Storage API with the service key;
    /// one that already exists (a reused state dir) is fine.
    pub async fn create_bucket(&self, id: &str, public: bool) -> Result<(), StackError> {
        let context = format!("creating bucket {id}");
        let resp = reqwest::Client::new()
            .post(format!("{}/storage/v1/bucket", self.supabase_url))
            .header("apikey", &self.service_key)
            .bearer_auth(&self.service_key)
            .json(&json!({"id": id, "name": id, "public": public}))
            .send()
            .await
            .map_err(|e| StackError::http(&context, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| StackError::http(&context, e))?;
        if status == 200 {
            return Ok(());
        }
        let duplicate = serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| v["statusCode"] == "409")
            .unwrap_or(false);
        if status == 400 && duplicate {
            return Ok(());
        }
        Err(StackError::UnexpectedResponse {
            context,
            status,
            body,
        })
    }

    /// `.dev.vars` for `wrangler dev` (dotenv): the worker's Supabase, provider
    /// and auth settings pointing at this stack.
    pub fn dev_vars(&self) -> String {
        let mut out = String::from("# Written by the local stack; valid while it runs.\n");
        for (key, value) in self.worker_vars() {
            let _ = writeln!(out, "{key}={value}");
        }
        out
    }

    /// The worker's variables (the `.dev.vars` entries) as pairs.
    pub fn worker_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SUPABASE_URL", self.supabase_url.clone()),
            ("SUPABASE_SERVICE_KEY", self.service_key.clone()),
            ("SUPABASE_JWT_SECRET", self.jwt_secret.clone()),
            // The publishable key: the `apikey` of reads the worker makes with a user's token.
            ("SUPABASE_ANON_KEY", self.anon_key.clone()),
            ("OPENAI_API_KEY", self.openai_key.clone()),
            ("OPENAI_BASE_URL", self.openai_base_url.clone()),
            ("TRIPO_API_KEY", self.tripo_key.clone()),
            ("TRIPO_BASE_URL", self.tripo_base_url.clone()),
            ("TRIPO_V3_BASE_URL", self.tripo_v3_base_url.clone()),
            ("AUTH_MODE", "supabase".to_string()),
            // The tools on this stack (end-to-end suite, bench, soak, fuzz, dev.sh) submit many
            // steps for few users: the per-user limits stay on (every submit goes through the
            // user's limits object) but far above what they submit, and the flood guard, whose
            // limit wrangler.toml fixes, is off. The limits' own cases start workers with theirs.
            ("RATE_LIMIT_SUBMITS_PER_MINUTE", GENEROUS_LIMIT.to_string()),
            (
                "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
                GENEROUS_LIMIT.to_string(),
            ),
            ("MAX_ACTIVE_STEPS_PER_USER", GENEROUS_LIMIT.to_string()),
            (
                "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS",
                GENEROUS_LIMIT.to_string(),
            ),
            ("RATE_LIMIT_USE_BINDING", "false".to_string()),
        ]
    }

    /// A shell-sourceable file: the worker's variables plus the stack's own
    /// (anon key, PostgREST, database, buckets, state dir) and, when given, a
    /// ready-made user (`STACK_USER_ID`, `STACK_USER_TOKEN`).
    pub fn env_file(&self, user: Option<(uuid::Uuid, &str)>) -> String {
        let mut vars: Vec<(&str, String)> = self.worker_vars();
        vars.extend([
            ("STACK_SUPABASE_URL", self.supabase_url.clone()),
            ("STACK_ANON_KEY", self.anon_key.clone()),
            ("STACK_SERVICE_KEY", self.service_key.clone()),
            ("GENERATED_ASSETS_BUCKET_NAME", self.bucket.clone()),
            ("STACK_INPUT_BUCKET", self.input_bucket.clone()),
            ("STACK_POSTGREST_URL", self.postgrest_url.clone()),
            ("STACK_DATABASE_URL", self.database_url.clone()),
            ("STACK_PG_PORT", self.pg_port.to_string()),
            ("STACK_STATE_DIR", self.state_dir.display().to_string()),
        ]);
        if let Some((id, token)) = user {
            vars.push(("STACK_USER_ID", id.to_string()));
            vars.push(("STACK_USER_TOKEN", token.to_string()));
        }
        let mut out = String::from("# Written by the local stack; source it: . FILE\n");
        for (key, value) in vars {
            let _ = writeln!(out, "export {key}={}", shell_quote(&value));
        }
        out
    }

    /// Creates a user in `auth.users` (as GoTrue would; rows of our tables
    /// reference it) and returns its id and a 1-hour access token. The same
    /// email again returns the same user.
    pub async fn create_user(&self, email: &str) -> Result<(uuid::Uuid, String), StackError> {
        self.create_user_with_ttl(email, USER_TOKEN_TTL_SECS).await
    }

    /// [`Stack::create_user`] with a chosen token lifetime (negative: expired).
    pub async fn create_user_with_ttl(
        &self,
        email: &str,
        ttl_secs: i64,
    ) -> Result<(uuid::Uuid, String), StackError> {
        let id = self.insert_auth_user(email).await?;
        Ok((id, self.user_token(id, email, ttl_secs)))
    }

    async fn insert_auth_user(&self, email: &str) -> Result<uuid::Uuid, StackError> {
        if email.is_empty() || email.contains('\0') {
            return Err(StackError::InvalidArgument(format!("bad email {email:?}")));
        }
        let id = uuid::Uuid::new_v4();
        let sql = format!(
            "insert into auth.users (instance_id, id, aud, role, email, \
               raw_app_meta_data, raw_user_meta_data, created_at, updated_at) \
             values ('00000000-0000-0000-0000-000000000000', '{id}', 'authenticated', \
               'authenticated', {email}, \
               '{{\"provider\":\"email\",\"providers\":[\"email\"]}}', '{{}}', now(), now()) \
             on conflict (email) do update set updated_at = now() \
             returning id;",
            email = postgres::sql_literal(email),
        );
        let out = self.psql(&sql).await?;
        out.trim()
            .parse()
            .map_err(|_| StackError::UnexpectedResponse {
                context: "inserting into auth.users".into(),
                status: 0,
                body: out,
            })
    }

    /// The fixed user every request runs as under `AUTH_MODE=none` ([`LOCAL_USER_ID`]) exists
    /// in `auth.users`, so the worker's rows (whose `user_id` references it) can be written.
    async fn ensure_local_user(&self) -> Result<(), StackError> {
        let sql = format!(
            "insert into auth.users (instance_id, id, aud, role, email, \
               raw_app_meta_data, raw_user_meta_data, created_at, updated_at) \
             values ('00000000-0000-0000-0000-000000000000', '{LOCAL_USER_ID}', 'authenticated', \
               'authenticated', 'local@makeit3d.invalid', '{{}}', '{{}}', now(), now()) \
             on conflict do nothing;"
        );
        self.psql(&sql).await.map(|_| ())
    }

    /// An access token of a Supabase anonymous sign-in (`is_anonymous: true`): valid in every
    /// other way, so only the anonymous-user policy can refuse it.
    pub fn anonymous_token(&self, id: uuid::Uuid, ttl_secs: i64) -> String {
        self.access_token(id, None, ttl_secs)
    }

    /// A user access token as GoTrue issues it, signed with this stack's secret:
    /// `aud`/`role` = `authenticated`, `sub`, `email`, `iat`, `exp`, and `iss` =
    /// `{supabase_url}/auth/v1`.
    pub fn user_token(&self, id: uuid::Uuid, email: &str, ttl_secs: i64) -> String {
        self.access_token(id, Some(email), ttl_secs)
    }

    /// An access token of user `id`: a named user with `email`, else an anonymous sign-in.
    fn access_token(&self, id: uuid::Uuid, email: Option<&str>, ttl_secs: i64) -> String {
        let now = fake_storage::jwt::now_unix();
        let mut claims = json!({
            "iss": format!("{}/auth/v1", self.supabase_url),
            "aud": "authenticated",
            "role": "authenticated",
            "sub": id.to_string(),
            "iat": now,
            "exp": now + ttl_secs,
            "is_anonymous": email.is_none(),
        });
        if let Some(e) = email {
            claims["email"] = json!(e);
        }
        fake_storage::jwt::sign(&claims, &self.jwt_secret)
    }

    /// Runs SQL as the superuser; returns stdout in `-At` form (rows on lines,
    /// columns separated by `|`). Errors carry psql's stderr with the SQLSTATE.
    pub async fn psql(&self, sql: &str) -> Result<String, StackError> {
        self.postgres.psql(sql).await
    }

    /// Applies `sql/bootstrap.sql` and every `migrations/*.sql` again on the live
    /// database (they are idempotent); returns the migration files, in order.
    pub async fn reapply_schema(&self) -> Result<Vec<PathBuf>, StackError> {
        self.postgres
            .psql_script(
                BOOTSTRAP_SQL,
                &[("authenticator_password", &self.authenticator_password)],
            )
            .await?;
        apply_migrations(&self.postgres, &self.repo_root).await
    }

    /// Asks PostgREST to reload its schema cache (after DDL from a test).
    pub async fn reload_postgrest_schema(&self) -> Result<(), StackError> {
        self.psql("notify pgrst, 'reload schema';")
            .await
            .map(|_| ())
    }

    /// The processes the stack started, as (name, pid); each is also the id of
    /// its process group (PostgREST: spawned with its own group; the postmaster:
    /// pg_ctl starts it with setsid). PostgreSQL's backends are the postmaster's
    /// children ([`process::descendants`]), each in a session of its own.
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        let mut out = vec![("postgrest", self.postgrest_pid())];
        if let Some(pid) = self.postgres.postmaster_pid() {
            out.push(("postgres", pid));
        }
        out
    }

    /// PostgREST's process id (its process group).
    pub fn postgrest_pid(&self) -> u32 {
        self.postgrest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pid()
    }

    /// Stops PostgREST (SIGTERM, then SIGKILL): the gateway's `/rest/v1` answers Kong's 502
    /// until [`Stack::start_postgrest`]. The database and its data stay.
    pub fn stop_postgrest(&self) {
        self.postgrest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop();
    }

    /// Starts PostgREST again with the same configuration and ports (after
    /// [`Stack::stop_postgrest`]; a running one is stopped first) and waits until it is ready.
    pub async fn start_postgrest(&self) -> Result<(), StackError> {
        self.stop_postgrest();
        let fresh = Postgrest::start(&self.postgrest_config).await?;
        let mut old = std::mem::replace(
            &mut *self.postgrest.lock().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        old.stop();
        Ok(())
    }

    /// PostgREST down for `down`, then back on the same port with the same data.
    pub async fn pause_postgrest(&self, down: Duration) -> Result<(), StackError> {
        self.stop_postgrest();
        tokio::time::sleep(down).await;
        self.start_postgrest().await
    }

    /// Storage down for `seconds` at the gateway (Kong's 502 for every `/storage/v1` request;
    /// `reset`: dropped connections instead), then back on the same port with the same objects.
    pub fn storage_outage(&self, seconds: f64, reset: bool) {
        if let Some(gw) = self.gateway.as_ref() {
            gw.outage(false, seconds, reset);
        }
    }

    /// Chaos mode on every surface the worker calls: the provider fakes (OpenAI, Tripo, model
    /// files), Storage and PostgREST, each with its own spec (`None`: left as it is).
    pub fn set_chaos(
        &self,
        providers: Option<chaos::ChaosSpec>,
        storage: Option<chaos::ChaosSpec>,
        rest: Option<chaos::ChaosSpec>,
    ) -> Result<(), String> {
        if let (Some(spec), Some(f)) = (providers, self.fakes.as_ref()) {
            f.set_chaos(spec)?;
        }
        if let Some(gw) = self.gateway.as_ref() {
            if let Some(spec) = storage {
                gw.set_chaos(false, spec)?;
            }
            if let Some(spec) = rest {
                gw.set_chaos(true, spec)?;
            }
        }
        Ok(())
    }

    /// Chaos off everywhere; the counters of each surface (providers, storage, rest).
    pub fn clear_chaos(&self) -> serde_json::Value {
        let providers = self.fakes.as_ref().map(|f| f.clear_chaos());
        let (storage, rest) = match self.gateway.as_ref() {
            Some(gw) => (Some(gw.clear_chaos(false)), Some(gw.clear_chaos(true))),
            None => (None, None),
        };
        json!({"providers": providers, "storage": storage, "rest": rest})
    }

    /// The provider fakes, for test control (directives, request log, keys).
    pub fn fakes(&self) -> Option<&fake_providers::Fakes> {
        self.fakes.as_ref()
    }

    /// The gateway (its address; its test-control endpoints are under
    /// `{supabase_url}/__fake/storage/`).
    pub fn gateway(&self) -> Option<&fake_storage::Gateway> {
        self.gateway.as_ref()
    }

    /// Where each component logs.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        vec![
            self.postgres.log_path(),
            self.state_dir.join("logs").join("postgrest.log"),
        ]
    }

    /// Stops everything: the in-process servers, PostgREST (its process group),
    /// PostgreSQL (`pg_ctl stop -m fast`), then removes a temp state dir.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        if let Some(fakes) = self.fakes.take() {
            fakes.stop().await;
        }
        self.postgrest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop();
        self.postgres.stop().await;
        // Dropping `self` removes a temp state dir (a kept one stays).
    }
}

impl Drop for Stack {
    /// Without [`Stack::stop`] (an error, a panic): PostgREST and PostgreSQL are
    /// stopped by their own guards; the in-process servers are told to stop on
    /// the current runtime, if there still is one (else they end with it).
    fn drop(&mut self) {
        let gateway = self.gateway.take();
        let fakes = self.fakes.take();
        if gateway.is_none() && fakes.is_none() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(gateway) = gateway {
                    gateway.stop().await;
                }
                if let Some(fakes) = fakes {
                    fakes.stop().await;
                }
            });
        }
    }
}

/// Applies every `*.sql` of `repo_root/migrations`, sorted by name, each in
/// one transaction with ON_ERROR_STOP.
async fn apply_migrations(pg: &Postgres, repo_root: &Path) -> Result<Vec<PathBuf>, StackError> {
    let files = migration_files(repo_root)?;
    for file in &files {
        pg.psql_file(file, &[]).await.map_err(|e| match e {
            StackError::Psql { status, stderr } => StackError::Psql {
                status,
                stderr: format!("{}: {stderr}", file.display()),
            },
            other => other,
        })?;
    }
    Ok(files)
}

/// The migration files, in the order they apply.
pub fn migration_files(repo_root: &Path) -> Result<Vec<PathBuf>, StackError> {
    let dir = repo_root.join("migrations");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| StackError::io(format!("reading {}", dir.display()), e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| StackError::io(format!("reading {}", dir.display()), e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "sql") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// How many times a start is retried when its freshly picked port was taken.
const PORT_ATTEMPTS: u32 = 3;

/// Whether a start failed because its port was taken meanwhile (the messages
/// of PostgreSQL and of PostgREST's Haskell runtime).
fn is_port_clash(error: &StackError) -> bool {
    let text = error.to_string();
    text.contains("Address already in use") || text.contains("resource busy")
}

/// Creates the state dir's layout. As root, the server runs as `postgres`,
/// which must be able to reach `STATE/pg`: the state dir is made traversable.
fn prepare_state_dir(state_dir: &Path) -> Result<(), StackError> {
    for sub in ["logs", "storage"] {
        let dir = state_dir.join(sub);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StackError::io(format!("creating {}", dir.display()), e))?;
    }
    if postgres::is_root() {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(state_dir)
            .map_err(|e| StackError::io(format!("reading {}", state_dir.display()), e))?;
        let mode = meta.permissions().mode() | 0o011;
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| StackError::io(format!("chmod {}", state_dir.display()), e))?;
    }
    Ok(())
}

/// A fresh 64-hex-character HS256 secret.
fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Single-quotes a value for POSIX shells.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_escapes_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("http://x"), "'http://x'");
    }

    #[test]
    fn sql_literal_doubles_quotes() {
        assert_eq!(postgres::sql_literal("o'neil@x"), "'o''neil@x'");
    }

    #[test]
    fn secrets_are_long_enough() {
        let s = random_secret();
        assert_eq!(s.len(), 64);
        assert_ne!(s, random_secret());
    }

    #[test]
    fn migrations_are_found_in_order() {
        let files = migration_files(&default_repo_root()).unwrap();
        assert!(files
            .first()
            .is_some_and(|f| f.ends_with("migrations/0001_init.sql")));
        let mut sorted = files.clone();
        sorted.sort();
        assert_eq!(files, sorted);
    }
}
