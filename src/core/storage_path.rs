//! Supabase Storage addressing: the input URL policy of SPEC §4.1 and the output paths of §1/§7.
//!
//! **Inputs.** A client sends full Storage URLs. [`parse_input_url`] accepts only URLs on the
//! configured Supabase origin under `/storage/v1/object/` (`public/`, `sign/`, `authenticated/` or
//! a bare `{bucket}/{path}`) and turns them into an [`InputObject`]: bucket and decoded object path.
//! The worker never fetches the client's string: it fetches a URL rebuilt from the validated parts
//! on the configured origin ([`InputObject::proof`], [`InputObject::download`]), so no parser
//! difference between this code and the runtime's URL parser can send a request elsewhere (SSRF).
//!
//! **Whose rights.** Inputs are read with the caller's rights, never more (SPEC §4.1): each URL
//! form names the route, and the route the rights ([`ReadRights`]); see [`InputObject::proof`].
//!
//! Policy decisions:
//! * Scheme and host compare case-insensitively; a default port equals an absent one
//!   (`https://x.supabase.co` == `https://x.supabase.co:443`). Userinfo (`@` in the authority) is
//!   refused, which also defeats `evil.com#@x.supabase.co` style look-alikes.
//! * **Fragments are refused** (a `#` anywhere): a Storage URL never needs one, and every `#` we
//!   would see is a mistake or an attack. (A file whose name contains a raw `#` must be
//!   percent-encoded by the client.)
//! * The query is kept only for `sign/` URLs (it carries the `token=`, which is required); on
//!   the other routes it is ignored.
//! * Every path segment is percent-decoded once and must then be non-empty, not `.` or `..`, and
//!   free of `/`, `\`, `%` (double encoding) and control characters. Raw backslashes, spaces and
//!   control characters anywhere in the URL are refused, as are URLs over 2048 bytes.
//! * A bare `{bucket}/{path}` URL whose "bucket" is a Storage route name (`info`, `list`, …) is
//!   refused: Storage would route it elsewhere.
//!
//! **Outputs.** [`output_path`] gives `concepts/{task_id}/{i}.png`, `models/{task_id}/model.glb`
//! and `models/{task_id}/refined_model.glb`; [`upload_url`] and [`asset_url`] build the URLs.

use super::ids::TaskId;
use super::step::Step;

/// Longest input URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest decoded object path accepted, in bytes (Supabase's own key limit is 1024).
pub const MAX_OBJECT_PATH_LEN: usize = 1024;
/// Longest decoded bucket name accepted, in bytes (Supabase allows 100).
pub const MAX_BUCKET_LEN: usize = 100;
/// The path prefix of every object route.
const OBJECT_PREFIX: &str = "/storage/v1/object/";
/// First segments after `/storage/v1/object/` that are Storage routes, not bucket names.
const RESERVED_ROUTES: [&str; 10] = [
    "public",
    "sign",
    "authenticated",
    "info",
    "list",
    "move",
    "copy",
    "upload",
    "render",
    "search",
];

/// HTTP scheme of an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Scheme, host and port of `SUPABASE_URL`: the only origin input URLs may point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: Scheme,
    /// Lowercase host; an IPv6 literal keeps its brackets.
    host: String,
    /// Explicit or default port.
    port: u16,
}

/// Why `SUPABASE_URL` is not a usable origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("SUPABASE_URL must start with http:// or https://")]
    Scheme,
    #[error("SUPABASE_URL must not contain user information")]
    Userinfo,
    #[error("SUPABASE_URL has an invalid host")]
    Host,
    #[error("SUPABASE_URL has an invalid port")]
    Port,
    #[error("SUPABASE_URL must be an origin only (no path other than '/', query or fragment)")]
    Path,
}

impl Origin {
    /// Parses `SUPABASE_URL`, e.g. `https://abc.supabase.co` or `http://127.0.0.1:54321/`.
    pub fn parse(url: &str) -> Result<Origin, OriginError> {
        let url = url.trim();
        let (scheme, rest) = split_scheme(url).ok_or(OriginError::Scheme)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !(tail.is_empty() || tail == "/") {
            return Err(OriginError::Path);
        }
        let (host, port) = split_authority(authority, scheme).map_err(|e| match e {
            AuthorityError::Userinfo => OriginError::Userinfo,
            AuthorityError::Host => OriginError::Host,
            AuthorityError::Port => OriginError::Port,
        })?;
        if !valid_host(&host) {
            return Err(OriginError::Host);
        }
        Ok(Origin { scheme, host, port })
    }

    /// The origin of a configuration that did not validate (`config::Config::load` never
    /// returns one that holds it).
    pub(crate) fn unset() -> Origin {
        Origin {
            scheme: Scheme::Https,
            host: String::new(),
            port: Scheme::Https.default_port(),
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default. No trailing `/`.
    pub fn as_url(&self) -> String {
        if self.port == self.scheme.default_port() {
            format!("{}://{}", self.scheme.as_str(), self.host)
        } else {
            format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

/// Why an input URL was refused. Each message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("URL contains spaces, backslashes or control characters")]
    ForbiddenCharacter,
    #[error("URL must be an absolute http(s) URL")]
    NotHttp,
    #[error("URL must not contain user information ('@')")]
    Userinfo,
    #[error("URL must not contain a fragment ('#')")]
    Fragment,
    #[error("URL must be on the configured Supabase origin")]
    WrongOrigin,
    #[error("URL must point under /storage/v1/object/")]
    NotStorageObject,
    #[error("URL must name a bucket and an object path")]
    MissingObject,
    #[error("URL path has an empty segment")]
    EmptySegment,
    #[error("URL path must not contain '.' or '..' segments")]
    DotSegment,
    #[error("URL path has an invalid percent-encoding")]
    BadEncoding,
    #[error("URL path segments must not encode '/', '\\', '%' or control characters")]
    EncodedForbidden,
    #[error("bucket name is not valid")]
    BadBucket,
    #[error("object path is too long")]
    PathTooLong,
    #[error("signed URL must carry a token= query parameter")]
    MissingToken,
    #[error("URL query contains forbidden characters")]
    BadQuery,
}

/// How the client addressed the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `/object/public/{bucket}/{path}`.
    Public,
    /// `/object/sign/{bucket}/{path}?token=…`; `query` is the raw query, without `?`.
    Signed { query: String },
    /// `/object/authenticated/{bucket}/{path}` or the bare `/object/{bucket}/{path}`.
    Authenticated,
}

/// Whose rights a read of an input object is made with (SPEC §4.1: the caller's, never more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRights {
    /// No credentials: Storage's public route (public buckets only), or a signed URL's own token.
    Anonymous,
    /// The caller's own access token: the project's Storage policies decide.
    Caller,
    /// The service key: `AUTH_MODE=none`, this task's own outputs, or a download whose proof passed.
    Service,
}

/// One read of an input object: the URL and whose rights it is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRead {
    pub url: String,
    pub rights: ReadRights,
    /// Send `Range: bytes=0-0` and read only the headers (the signed route has no info form).
    pub range_probe: bool,
}

/// A validated input object on the configured Supabase origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputObject {
    origin: Origin,
    access: Access,
    bucket: String,
    path: String,
}

impl InputObject {
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The decoded bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The decoded object path inside the bucket (segments joined by `/`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last path segment (the file name), decoded.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The read that proves, at submit, that the caller may read this object (SPEC §4.1), by
    /// the route the client named: `public/` through Storage's public info route with no
    /// credentials (works for public buckets only); `sign/` through the signed route itself, with
    /// the client's token and a one-byte `Range` (Storage checks the token and its path; the
    /// route has no info form); `authenticated/` and bare URLs through the authenticated info
    /// route with the caller's own access token, so the project's Storage policies decide.
    pub fn proof(&self) -> InputRead {
        match &self.access {
            Access::Public => InputRead {
                url: self.route_url("info/public/", None),
                rights: ReadRights::Anonymous,
                range_probe: false,
            },
            Access::Signed { query } => InputRead {
                url: self.route_url("sign/", Some(query)),
                rights: ReadRights::Anonymous,
                range_probe: true,
            },
            Access::Authenticated => InputRead {
                url: self.route_url("info/authenticated/", None),
                rights: ReadRights::Caller,
                range_probe: false,
            },
        }
    }

    /// The proof made with the service key: only under `AUTH_MODE=none` (no caller token
    /// exists) and for this task's own outputs read by the task's owner (flow B).
    pub fn service_proof(&self) -> InputRead {
        InputRead {
            url: self.route_url("info/authenticated/", None),
            rights: ReadRights::Service,
            range_probe: false,
        }
    }

    /// The job's download of an object whose [`proof`](Self::proof) passed at submit: `public/`
    /// through the public route with no key, `sign/` with the client's token, `authenticated/`
    /// and bare URLs with the service key (the caller proved at submit that they may read it).
    pub fn download(&self) -> InputRead {
        match &self.access {
            Access::Public => InputRead {
                url: self.route_url("public/", None),
                rights: ReadRights::Anonymous,
                range_probe: false,
            },
            Access::Signed { query } => InputRead {
                url: self.route_url("sign/", Some(query)),
                rights: ReadRights::Anonymous,
                range_probe: false,
            },
            Access::Authenticated => InputRead {
                url: self.route_url("authenticated/", None),
                rights: ReadRights::Service,
                range_probe: false,
            },
        }
    }

    /// Whether this is one of `task`'s own outputs (`concepts/{task}/…` or `models/{task}/…` in
    /// the generated-assets bucket `bucket`), addressed by an authenticated or bare URL: the
    /// flow-B exception of SPEC §4.1, granted only once the caller is known to own the task.
    pub fn is_output_of(&self, bucket: &str, task: &TaskId) -> bool {
        if !matches!(self.access, Access::Authenticated) || self.bucket != bucket {
            return false;
        }
        let mut parts = self.path.splitn(3, '/');
        let (Some(kind), Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        matches!(kind, "concepts" | "models") && id == task.as_str() && !rest.is_empty()
    }

    /// `{origin}/storage/v1/object/{route}{bucket}/{path}[?query]`, rebuilt from the validated
    /// parts (never the client's string).
    fn route_url(&self, route: &str, query: Option<&str>) -> String {
        let mut url = format!(
            "{}{}{}{}",
            self.origin.as_url(),
            OBJECT_PREFIX,
            route,
            self.encoded_object()
        );
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    fn encoded_object(&self) -> String {
        format!(
            "{}/{}",
            encode_segment(&self.bucket),
            encode_path(&self.path)
        )
    }
}

/// The input URL policy as a regular expression for `/openapi.json` (ECMA-262 syntax, read
/// alike by Python's `re` and Rust's regex engines): the configured origin (scheme and host in
/// any case, a default port optional), `/storage/v1/object/`, then `public/`, `authenticated/`,
/// `sign/` (with a `token=` query) or a bare bucket that is not a Storage route; the bucket
/// (1–100 of `A-Z a-z 0-9 _ - .`, not starting with `.`); 1–8 object path segments of 1–100
/// RFC 3986 path characters or `%XX` escapes of printable ASCII other than `/`, `\`, `%` and
/// `.`, not starting with `.` (so no empty, `.` or `..` segment). These are the URLs Supabase's
/// SDK makes. Every URL it matches passes [`parse_input_url`]; that function also reads the
/// rarer forms the pattern leaves out (UTF-8 escapes, raw non-ASCII, longer paths).
pub fn input_url_pattern(origin: &Origin) -> String {
    fn any_case(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect()
    }
    let scheme = any_case(origin.scheme.as_str());
    let host = any_case(&origin.host);
    let port = if origin.port == origin.scheme.default_port() {
        format!("(?::{})?", origin.port)
    } else {
        format!(":{}", origin.port)
    };
    // %XX of a printable ASCII byte other than `%` (25), `.` (2E), `/` (2F) and `\` (5C).
    let escape = "%(?:2[0-46-9A-Da-d]|[346][0-9A-Fa-f]|5[0-9ABD-Fabd-f]|7[0-9A-Ea-e])";
    let first = format!("(?:[A-Za-z0-9_~!$&'()*+,;=:@-]|{escape})");
    let unit = format!("(?:[A-Za-z0-9_~!$&'()*+,;=:@.-]|{escape})");
    let segment = format!("{first}{unit}{{0,99}}");
    let object = format!("{segment}(?:/{segment}){{0,7}}");
    let bucket = "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}";
    let query = "(?:\\?[A-Za-z0-9_.~=&-]*)?";
    let token = "\\?token=[A-Za-z0-9_.~-]+(?:&[A-Za-z0-9_.~=-]*)*";
    let reserved = RESERVED_ROUTES.join("|");
    format!(
        "^{scheme}://{host}{port}{OBJECT_PREFIX}\
         (?:(?:public|authenticated)/{bucket}/{object}{query}\
         |sign/{bucket}/{object}{token}\
         |(?!(?:{reserved})/){bucket}/{object}{query})$"
    )
}

/// Validates an input URL against the policy of SPEC §4.1 (see the module doc).
pub fn parse_input_url(url: &str, supabase: &Origin) -> Result<InputObject, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if url.chars().any(|c| c.is_control() || c == ' ' || c == '\\') {
        return Err(UrlError::ForbiddenCharacter);
    }
    if url.contains('#') {
        return Err(UrlError::Fragment);
    }
    let (scheme, rest) = split_scheme(url).ok_or(UrlError::NotHttp)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    let (host, port) = split_authority(authority, scheme).map_err(|e| match e {
        AuthorityError::Userinfo => UrlError::Userinfo,
        AuthorityError::Host | AuthorityError::Port => UrlError::WrongOrigin,
    })?;
    if scheme != supabase.scheme || host != supabase.host || port != supabase.port {
        return Err(UrlError::WrongOrigin);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let route = path
        .strip_prefix(OBJECT_PREFIX)
        .ok_or(UrlError::NotStorageObject)?;
    let segments = decode_segments(route)?;
    let (access, object) = split_route(&segments, query)?;
    let (bucket, object) = object.split_first().ok_or(UrlError::MissingObject)?;
    if object.is_empty() {
        return Err(UrlError::MissingObject);
    }
    if bucket.len() > MAX_BUCKET_LEN {
        return Err(UrlError::BadBucket);
    }
    let path = object.join("/");
    if path.len() > MAX_OBJECT_PATH_LEN {
        return Err(UrlError::PathTooLong);
    }
    Ok(InputObject {
        origin: supabase.clone(),
        access,
        bucket: bucket.clone(),
        path,
    })
}

/// Splits the decoded route segments into the access kind and `[bucket, path…]`.
fn split_route<'a>(
    segments: &'a [String],
    query: Option<&str>,
) -> Result<(Access, &'a [String]), UrlError> {
    let first = segments.first().ok_or(UrlError::MissingObject)?;
    match first.as_str() {
        "public" => Ok((Access::Public, &segments[1..])),
        "authenticated" => Ok((Access::Authenticated, &segments[1..])),
        "sign" => {
            let query = query.ok_or(UrlError::MissingToken)?;
            check_query(query)?;
            if !has_token(query) {
                return Err(UrlError::MissingToken);
            }
            Ok((
                Access::Signed {
                    query: query.to_owned(),
                },
                &segments[1..],
            ))
        }
        other if RESERVED_ROUTES.contains(&other) => Err(UrlError::BadBucket),
        _ => Ok((Access::Authenticated, segments)),
    }
}

/// Raw query characters allowed in a signed URL we re-issue as given.
fn check_query(query: &str) -> Result<(), UrlError> {
    let ok = query
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '#' | '\\' | '"' | '<' | '>' | '`'));
    if ok {
        Ok(())
    } else {
        Err(UrlError::BadQuery)
    }
}

fn has_token(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.strip_prefix("token=").is_some_and(|v| !v.is_empty()))
}

/// Splits the route after `/storage/v1/object/` into percent-decoded, checked segments.
fn decode_segments(route: &str) -> Result<Vec<String>, UrlError> {
    route.split('/').map(decode_segment).collect()
}

fn decode_segment(raw: &str) -> Result<String, UrlError> {
    if raw.is_empty() {
        return Err(UrlError::EmptySegment);
    }
    if !raw.chars().all(raw_path_char) {
        return Err(UrlError::ForbiddenCharacter);
    }
    let decoded = percent_decode(raw).ok_or(UrlError::BadEncoding)?;
    if decoded == "." || decoded == ".." {
        return Err(UrlError::DotSegment);
    }
    if decoded.is_empty() {
        return Err(UrlError::EmptySegment);
    }
    if decoded
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '%'))
    {
        return Err(UrlError::EncodedForbidden);
    }
    Ok(decoded)
}

/// Characters allowed raw in a path segment: RFC 3986 `pchar` (with `%` escapes) plus
/// non-ASCII, which we re-encode on output.
fn raw_path_char(c: char) -> bool {
    !c.is_ascii() || c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&(c as u8))
}

/// Decodes `%XX` escapes; `None` on a malformed escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strips a case-insensitive `http://` or `https://`.
fn split_scheme(url: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.eq_ignore_ascii_case("https") {
        Some((Scheme::Https, rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Some((Scheme::Http, rest))
    } else {
        None
    }
}

enum AuthorityError {
    Userinfo,
    Host,
    Port,
}

/// Splits `host[:port]` (or `[v6]:port`) into a lowercase host and the effective port.
fn split_authority(authority: &str, scheme: Scheme) -> Result<(String, u16), AuthorityError> {
    if authority.contains('@') {
        return Err(AuthorityError::Userinfo);
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(AuthorityError::Host)?;
        let (host, rest) = authority.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (
                host,
                Some(rest.strip_prefix(':').ok_or(AuthorityError::Host)?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(AuthorityError::Host);
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) => parse_port(p).ok_or(AuthorityError::Port)?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

/// A DNS name, IPv4 address or bracketed IPv6 literal (no zone id).
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.contains(':')
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// The object path of an output inside the generated-assets bucket (SPEC §1.3):
/// `concepts/{task_id}/{index}.png`, `models/{task_id}/model.glb` or
/// `models/{task_id}/refined_model.glb`. `index` only matters for concepts.
pub fn output_path(task: &TaskId, step: Step, index: u32) -> String {
    match step {
        Step::Concepts => format!("concepts/{}/{}.png", task.as_str(), index),
        Step::Model => format!("models/{}/model.glb", task.as_str()),
        Step::Refine => format!("models/{}/refined_model.glb", task.as_str()),
    }
}

/// Content type of the outputs of a step.
pub fn output_content_type(step: Step) -> &'static str {
    match step {
        Step::Concepts => "image/png",
        Step::Model | Step::Refine => "model/gltf-binary",
    }
}

/// `{SUPABASE_URL}/storage/v1/object/{bucket}/{path}`: where the worker uploads an output
/// (POST/PUT with the service key).
pub fn upload_url(origin: &Origin, bucket: &str, path: &str) -> String {
    format!(
        "{}{}{}/{}",
        origin.as_url(),
        OBJECT_PREFIX,
        encode_segment(bucket),
        encode_path(path)
    )
}

/// The non-expiring URL stored in a row's `asset_url` (SPEC §7): the public route for a public
/// bucket, else the authenticated route. Both are accepted back by [`parse_input_url`], so a
/// concept's URL can be the input of `image-to-model` (flow B).
pub fn asset_url(origin: &Origin, bucket: &str, path: &str, public_bucket: bool) -> String {
    let route = if public_bucket {
        "public"
    } else {
        "authenticated"
    };
    format!(
        "{}{}{}/{}/{}",
        origin.as_url(),
        OBJECT_PREFIX,
        route,
        encode_segment(bucket),
        encode_path(path)
    )
}

/// Percent-encodes each `/`-separated segment of an object path.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Punctuation left as is by [`encode_segment`].
const SEGMENT_SAFE: &[u8] = b"-._~:@!$'()*,;=";

/// Percent-encodes one path segment: keeps unreserved characters and the harmless `pchar`
/// sub-delimiters; encodes everything else, including `/`, `%`, `+`, `&`, `?` and `#`.
pub fn encode_segment(segment: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let keep = b.is_ascii_alphanumeric() || SEGMENT_SAFE.contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extremes of the documented pattern (`input_url_pattern`) all pass the policy: the
    /// longest bucket, eight longest segments with escapes, every access route, a token query.
    #[test]
    fn the_documented_pattern_admits_only_urls_the_policy_accepts() {
        let o = Origin::parse("https://abc.supabase.co").unwrap();
        let p = input_url_pattern(&o);
        assert!(p.starts_with("^[hH][tT][tT][pP][sS]://[aA][bB][cC]\\.[sS]"));
        assert!(p.contains("(?::443)?/storage/v1/object/"));
        let local = input_url_pattern(&Origin::parse("http://127.0.0.1:54321").unwrap());
        assert!(local.starts_with("^[hH][tT][tT][pP]://127\\.0\\.0\\.1:54321/storage/v1/object/"));
        let bucket = format!("b{}", ".".repeat(99));
        let seg = format!("a{}", "%7e.%20".repeat(33));
        let path = [seg.as_str(); 8].join("/");
        for url in [
            format!("HTTPS://ABC.supabase.co:443/storage/v1/object/public/{bucket}/{path}?x=1&y"),
            format!("https://abc.supabase.co/storage/v1/object/authenticated/-/{path}"),
            format!(
                "https://abc.supabase.co/storage/v1/object/sign/b_-/{path}?token=a.b-c&download="
            ),
            format!("https://abc.supabase.co/storage/v1/object/infos/a/{seg}"),
            "https://abc.supabase.co/storage/v1/object/b/~!$&'()*+,;=:@-".to_owned(),
        ] {
            assert!(parse_input_url(&url, &o).is_ok(), "{url}");
        }
        assert!(path.len() <= MAX_URL_LEN);
    }

    const BASE: &str = "https://abc.supabase.co";

    fn origin() -> Origin {
        Origin::parse(BASE).unwrap()
    }

    fn parse(url: &str) -> Result<InputObject, UrlError> {
        parse_input_url(url, &origin())
    }

    fn obj(url: &str) -> InputObject {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    // --- Origin ---------------------------------------------------------------------------

    #[test]
    fn origin_parses_and_normalises() {
        let o = Origin::parse("HTTPS://ABC.Supabase.CO/").unwrap();
        assert_eq!(o.scheme(), Scheme::Https);
        assert_eq!(o.host(), "abc.supabase.co");
        assert_eq!(o.port(), 443);
        assert_eq!(o.as_url(), "https://abc.supabase.co");
        assert_eq!(Origin::parse("https://abc.supabase.co:443").unwrap(), o);
        let local = Origin::parse("http://127.0.0.1:54321").unwrap();
        assert_eq!(local.port(), 54321);
        assert_eq!(local.as_url(), "http://127.0.0.1:54321");
        let v6 = Origin::parse("http://[::1]:8000").unwrap();
        assert_eq!(v6.host(), "[::1]");
        assert_eq!(v6.as_url(), "http://[::1]:8000");
    }

    #[test]
    fn origin_refuses_bad_values() {
        assert_eq!(Origin::parse("abc.supabase.co"), Err(OriginError::Scheme));
        assert_eq!(Origin::parse("ftp://abc"), Err(OriginError::Scheme));
        assert_eq!(Origin::parse("https://u:p@abc"), Err(OriginError::Userinfo));
        assert_eq!(Origin::parse("https://"), Err(OriginError::Host));
        assert_eq!(Origin::parse("https://a..b"), Err(OriginError::Host));
        assert_eq!(
            Origin::parse("https://[::1%25eth0]"),
            Err(OriginError::Host)
        );
        assert_eq!(Origin::parse("https://abc:0"), Err(OriginError::Port));
        assert_eq!(Origin::parse("https://abc:99999"), Err(OriginError::Port));
        assert_eq!(Origin::parse("https://abc:"), Err(OriginError::Port));
        assert_eq!(Origin::parse("https://abc/rest"), Err(OriginError::Path));
        assert_eq!(Origin::parse("https://abc?x"), Err(OriginError::Path));
    }

    // --- Accepted URL forms ---------------------------------------------------------------

    #[test]
    fn accepts_public_url() {
        let o = obj("https://abc.supabase.co/storage/v1/object/public/inputs/u1/photo.png");
        assert_eq!(o.access(), &Access::Public);
        assert_eq!(o.bucket(), "inputs");
        assert_eq!(o.path(), "u1/photo.png");
        assert_eq!(o.file_name(), "photo.png");
    }

    #[test]
    fn public_urls_are_proved_and_read_through_the_public_route_with_no_key() {
        let o = obj("https://abc.supabase.co/storage/v1/object/public/inputs/u1/photo.png");
        let proof = o.proof();
        assert_eq!(
            proof.url,
            "https://abc.supabase.co/storage/v1/object/info/public/inputs/u1/photo.png"
        );
        assert_eq!(proof.rights, ReadRights::Anonymous);
        let dl = o.download();
        assert_eq!(
            dl.url,
            "https://abc.supabase.co/storage/v1/object/public/inputs/u1/photo.png"
        );
        // The bug this replaces: a public/ URL downloaded through the authenticated route with
        // the service key read private buckets too.
        assert_eq!(dl.rights, ReadRights::Anonymous);
    }

    #[test]
    fn accepts_signed_url_and_keeps_query() {
        let o = obj("https://abc.supabase.co/storage/v1/object/sign/private/a/b.jpg?token=eyJ.x-y_z&download=b.jpg");
        assert_eq!(
            o.access(),
            &Access::Signed {
                query: "token=eyJ.x-y_z&download=b.jpg".into()
            }
        );
        let url = "https://abc.supabase.co/storage/v1/object/sign/private/a/b.jpg?token=eyJ.x-y_z&download=b.jpg";
        let proof = o.proof();
        assert_eq!(proof.url, url);
        assert_eq!(proof.rights, ReadRights::Anonymous);
        assert!(proof.range_probe);
        let dl = o.download();
        assert_eq!(dl.url, url);
        assert_eq!(dl.rights, ReadRights::Anonymous);
        assert!(!dl.range_probe);
    }

    #[test]
    fn signed_url_requires_a_token() {
        let base = "https://abc.supabase.co/storage/v1/object/sign/b/a.png";
        assert_eq!(parse(base), Err(UrlError::MissingToken));
        assert_eq!(parse(&format!("{base}?x=1")), Err(UrlError::MissingToken));
        assert_eq!(
            parse(&format!("{base}?token=")),
            Err(UrlError::MissingToken)
        );
        assert_eq!(
            parse(&format!("{base}?mytoken=1")),
            Err(UrlError::MissingToken)
        );
        assert!(parse(&format!("{base}?a=1&token=t")).is_ok());
        assert_eq!(
            parse(&format!("{base}?token=a\"b")),
            Err(UrlError::BadQuery)
        );
    }

    #[test]
    fn accepts_authenticated_and_bare_urls() {
        let a = obj("https://abc.supabase.co/storage/v1/object/authenticated/priv/x/y.webp");
        let b = obj("https://abc.supabase.co/storage/v1/object/priv/x/y.webp");
        assert_eq!(a.access(), &Access::Authenticated);
        assert_eq!(a, b);
        let proof = b.proof();
        assert_eq!(
            proof.url,
            "https://abc.supabase.co/storage/v1/object/info/authenticated/priv/x/y.webp"
        );
        assert_eq!(proof.rights, ReadRights::Caller);
        assert_eq!(b.service_proof().url, proof.url);
        assert_eq!(b.service_proof().rights, ReadRights::Service);
        let dl = b.download();
        assert_eq!(
            dl.url,
            "https://abc.supabase.co/storage/v1/object/authenticated/priv/x/y.webp"
        );
        assert_eq!(dl.rights, ReadRights::Service);
    }

    #[test]
    fn only_this_tasks_own_outputs_are_the_flow_b_exception() {
        let task = TaskId::parse("t-1").unwrap();
        let base = "https://abc.supabase.co/storage/v1/object";
        let yes = [
            format!("{base}/authenticated/gen/concepts/t-1/0.png"),
            format!("{base}/gen/concepts/t-1/0.png"),
            format!("{base}/gen/models/t-1/model.glb"),
        ];
        for u in &yes {
            assert!(obj(u).is_output_of("gen", &task), "{u}");
        }
        let no = [
            format!("{base}/public/gen/concepts/t-1/0.png"),
            format!("{base}/authenticated/other/concepts/t-1/0.png"),
            format!("{base}/gen/concepts/t-10/0.png"),
            format!("{base}/gen/concepts/t-2/0.png"),
            format!("{base}/gen/inputs/t-1/0.png"),
            format!("{base}/gen/concepts/t-1"),
            format!("{base}/gen/u1/concepts/t-1/0.png"),
        ];
        for u in &no {
            assert!(!obj(u).is_output_of("gen", &task), "{u}");
        }
        let signed = obj(&format!("{base}/sign/gen/concepts/t-1/0.png?token=x"));
        assert!(!signed.is_output_of("gen", &task));
    }

    #[test]
    fn query_is_ignored_outside_signed_urls() {
        let o = obj("https://abc.supabase.co/storage/v1/object/public/b/a.png?download=1&t=2");
        assert_eq!(
            o.download().url,
            "https://abc.supabase.co/storage/v1/object/public/b/a.png"
        );
        assert_eq!(
            o.proof().url,
            "https://abc.supabase.co/storage/v1/object/info/public/b/a.png"
        );
    }

    #[test]
    fn scheme_host_case_and_default_port_are_normalised() {
        let want = obj("https://abc.supabase.co/storage/v1/object/public/b/a.png");
        for url in [
            "HTTPS://ABC.SUPABASE.CO/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co:443/storage/v1/object/public/b/a.png",
            "hTTps://Abc.Supabase.Co:443/storage/v1/object/public/b/a.png",
        ] {
            assert_eq!(obj(url), want, "{url}");
        }
        // Path stays case-sensitive.
        assert_eq!(
            parse("https://abc.supabase.co/Storage/v1/object/public/b/a.png"),
            Err(UrlError::NotStorageObject)
        );
        let o = Origin::parse("https://abc.supabase.co:443").unwrap();
        assert!(parse_input_url("https://abc.supabase.co/storage/v1/object/b/a.png", &o).is_ok());
    }

    #[test]
    fn decodes_percent_encoded_names_and_re_encodes_them() {
        let o = obj("https://abc.supabase.co/storage/v1/object/public/b/my%20photo%C3%A9.png");
        assert_eq!(o.path(), "my photoé.png");
        assert!(o
            .download()
            .url
            .ends_with("/object/public/b/my%20photo%C3%A9.png"));
        // Raw non-ASCII is accepted and encoded on output.
        let raw = obj("https://abc.supabase.co/storage/v1/object/public/b/été.png");
        assert_eq!(raw.path(), "été.png");
        assert!(raw.download().url.ends_with("/b/%C3%A9t%C3%A9.png"));
        // Encoded '+', '&', '?' and ':' survive as data.
        let q = obj("https://abc.supabase.co/storage/v1/object/public/b/a%2Bb%26c%3Fd:e.png");
        assert_eq!(q.path(), "a+b&c?d:e.png");
        assert!(q.download().url.ends_with("/b/a%2Bb%26c%3Fd:e.png"));
    }

    #[test]
    fn accepts_ipv6_origin() {
        let o = Origin::parse("http://[::1]:54321").unwrap();
        let ok =
            parse_input_url("http://[::1]:54321/storage/v1/object/public/b/a.png", &o).unwrap();
        assert_eq!(
            ok.download().url,
            "http://[::1]:54321/storage/v1/object/public/b/a.png"
        );
        assert_eq!(
            parse_input_url("http://[::2]:54321/storage/v1/object/public/b/a.png", &o),
            Err(UrlError::WrongOrigin)
        );
        assert_eq!(
            parse_input_url("http://[::1]/storage/v1/object/public/b/a.png", &o),
            Err(UrlError::WrongOrigin)
        );
        assert_eq!(
            parse_input_url("http://[::1]x/storage/v1/object/public/b/a.png", &o),
            Err(UrlError::WrongOrigin)
        );
    }

    // --- Refused URLs ---------------------------------------------------------------------

    #[test]
    fn refuses_other_origins_and_look_alikes() {
        let cases = [
            "https://evil.com/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co.evil.com/storage/v1/object/public/b/a.png",
            "https://evilabc.supabase.co/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co./storage/v1/object/public/b/a.png",
            "http://abc.supabase.co/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co:8443/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co:80/storage/v1/object/public/b/a.png",
            "https://abc%2esupabase.co/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co:/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co:abc/storage/v1/object/public/b/a.png",
            "https://[::1]/storage/v1/object/public/b/a.png",
            "https:///abc.supabase.co/storage/v1/object/public/b/a.png",
        ];
        for url in cases {
            assert_eq!(parse(url), Err(UrlError::WrongOrigin), "{url}");
        }
    }

    #[test]
    fn refuses_userinfo_and_fragments() {
        assert_eq!(
            parse("https://abc.supabase.co@evil.com/storage/v1/object/public/b/a.png"),
            Err(UrlError::Userinfo)
        );
        assert_eq!(
            parse("https://evil.com@abc.supabase.co/storage/v1/object/public/b/a.png"),
            Err(UrlError::Userinfo)
        );
        assert_eq!(
            parse("https://user:pw@abc.supabase.co/storage/v1/object/public/b/a.png"),
            Err(UrlError::Userinfo)
        );
        assert_eq!(
            parse("https://evil.com#@abc.supabase.co/storage/v1/object/public/b/a.png"),
            Err(UrlError::Fragment)
        );
        assert_eq!(
            parse("https://abc.supabase.co/storage/v1/object/public/b/a.png#x"),
            Err(UrlError::Fragment)
        );
    }

    #[test]
    fn refuses_non_http_and_relative_urls() {
        for url in [
            "",
            "/storage/v1/object/public/b/a.png",
            "//abc.supabase.co/storage/v1/object/public/b/a.png",
            "ftp://abc.supabase.co/storage/v1/object/public/b/a.png",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https:/abc.supabase.co/storage/v1/object/public/b/a.png",
            "data:image/png;base64,AAAA",
        ] {
            assert_eq!(parse(url), Err(UrlError::NotHttp), "{url}");
        }
    }

    #[test]
    fn refuses_paths_outside_storage_objects() {
        for url in [
            "https://abc.supabase.co/",
            "https://abc.supabase.co",
            "https://abc.supabase.co/rest/v1/models",
            "https://abc.supabase.co/storage/v1/bucket/b",
            "https://abc.supabase.co/storage/v1/object",
            "https://abc.supabase.co/storage/v2/object/public/b/a.png",
            "https://abc.supabase.co/auth/v1/storage/v1/object/public/b/a.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::NotStorageObject), "{url}");
        }
    }

    #[test]
    fn refuses_missing_bucket_or_object() {
        for url in [
            "https://abc.supabase.co/storage/v1/object/public/b",
            "https://abc.supabase.co/storage/v1/object/b",
            "https://abc.supabase.co/storage/v1/object/authenticated/b",
            "https://abc.supabase.co/storage/v1/object/public",
        ] {
            assert_eq!(parse(url), Err(UrlError::MissingObject), "{url}");
        }
        assert_eq!(
            parse("https://abc.supabase.co/storage/v1/object/"),
            Err(UrlError::EmptySegment)
        );
    }

    #[test]
    fn refuses_dot_segments_plain_and_encoded() {
        for seg in ["..", ".", "%2e%2e", "%2E%2E", "%2E.", ".%2e", "%2e"] {
            let url = format!("https://abc.supabase.co/storage/v1/object/public/b/x/{seg}/a.png");
            assert_eq!(parse(&url), Err(UrlError::DotSegment), "{url}");
            let bucket = format!("https://abc.supabase.co/storage/v1/object/public/{seg}/a.png");
            assert_eq!(parse(&bucket), Err(UrlError::DotSegment), "{bucket}");
        }
        // Escaping from the object prefix with '..' is refused too.
        assert_eq!(
            parse("https://abc.supabase.co/storage/v1/object/../../rest/v1/x"),
            Err(UrlError::DotSegment)
        );
        // "..." is an ordinary name.
        assert!(parse("https://abc.supabase.co/storage/v1/object/public/b/.../a.png").is_ok());
        assert!(parse("https://abc.supabase.co/storage/v1/object/public/b/.hidden").is_ok());
    }

    #[test]
    fn refuses_encoded_separators_and_double_encoding() {
        for url in [
            "https://abc.supabase.co/storage/v1/object/public/b%2fc/a.png",
            "https://abc.supabase.co/storage/v1/object/public/b/x%2F..%2Fa.png",
            "https://abc.supabase.co/storage/v1/object/public/b/x%5ca.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a%00.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a%0a.png",
            "https://abc.supabase.co/storage/v1/object/public/b/%252e%252e/a.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::EncodedForbidden), "{url}");
        }
    }

    #[test]
    fn refuses_bad_escapes_and_invalid_utf8() {
        for url in [
            "https://abc.supabase.co/storage/v1/object/public/b/a%2.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a%zz.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a%",
            "https://abc.supabase.co/storage/v1/object/public/b/a%ff.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::BadEncoding), "{url}");
        }
    }

    #[test]
    fn refuses_empty_segments() {
        for url in [
            "https://abc.supabase.co/storage/v1/object/public//a.png",
            "https://abc.supabase.co/storage/v1/object/public/b//a.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a/",
            "https://abc.supabase.co/storage/v1/object//b/a.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::EmptySegment), "{url}");
        }
    }

    #[test]
    fn refuses_forbidden_raw_characters() {
        for url in [
            "https://abc.supabase.co/storage/v1/object/public/b\\a.png",
            "https://abc.supabase.co\\@evil.com/storage/v1/object/public/b/a.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a b.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a\tb.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a\nb.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a\u{7f}.png",
            " https://abc.supabase.co/storage/v1/object/public/b/a.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::ForbiddenCharacter), "{url:?}");
        }
        for url in [
            "https://abc.supabase.co/storage/v1/object/public/b/a\"b.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a<b>.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a{b}.png",
            "https://abc.supabase.co/storage/v1/object/public/b/a|b.png",
        ] {
            assert_eq!(parse(url), Err(UrlError::ForbiddenCharacter), "{url:?}");
        }
    }

    #[test]
    fn refuses_reserved_route_names_as_buckets() {
        for route in ["info", "list", "move", "copy", "upload", "render", "search"] {
            let url = format!("https://abc.supabase.co/storage/v1/object/{route}/b/a.png");
            assert_eq!(parse(&url), Err(UrlError::BadBucket), "{url}");
        }
        // Under an explicit access route the same names are ordinary bucket names.
        assert!(parse("https://abc.supabase.co/storage/v1/object/public/info/a.png").is_ok());
    }

    #[test]
    fn refuses_overlong_urls_and_names() {
        let long = format!(
            "https://abc.supabase.co/storage/v1/object/public/b/{}.png",
            "a".repeat(MAX_URL_LEN)
        );
        assert_eq!(parse(&long), Err(UrlError::TooLong));
        let path = format!(
            "https://abc.supabase.co/storage/v1/object/public/b/{}",
            vec!["a".repeat(200); 6].join("/")
        );
        assert_eq!(parse(&path), Err(UrlError::PathTooLong));
        let bucket = format!(
            "https://abc.supabase.co/storage/v1/object/public/{}/a.png",
            "b".repeat(MAX_BUCKET_LEN + 1)
        );
        assert_eq!(parse(&bucket), Err(UrlError::BadBucket));
    }

    // --- Outputs --------------------------------------------------------------------------

    #[test]
    fn output_paths_follow_the_spec() {
        let t = TaskId::parse("t-1").unwrap();
        assert_eq!(output_path(&t, Step::Concepts, 0), "concepts/t-1/0.png");
        assert_eq!(output_path(&t, Step::Concepts, 3), "concepts/t-1/3.png");
        assert_eq!(output_path(&t, Step::Model, 0), "models/t-1/model.glb");
        assert_eq!(
            output_path(&t, Step::Refine, 7),
            "models/t-1/refined_model.glb"
        );
        assert_eq!(output_content_type(Step::Concepts), "image/png");
        assert_eq!(output_content_type(Step::Refine), "model/gltf-binary");
    }

    #[test]
    fn upload_and_asset_urls() {
        let t = TaskId::parse("task-workspace-1:2").unwrap();
        let p = output_path(&t, Step::Model, 0);
        let o = origin();
        assert_eq!(
            upload_url(&o, "makeit3d_app_assets", &p),
            "https://abc.supabase.co/storage/v1/object/makeit3d_app_assets/models/task-workspace-1:2/model.glb"
        );
        assert_eq!(
            asset_url(&o, "assets", &p, true),
            "https://abc.supabase.co/storage/v1/object/public/assets/models/task-workspace-1:2/model.glb"
        );
        assert_eq!(
            asset_url(&o, "assets", &p, false),
            "https://abc.supabase.co/storage/v1/object/authenticated/assets/models/task-workspace-1:2/model.glb"
        );
        assert_eq!(
            upload_url(&o, "my bucket", "a b/c#d.png"),
            "https://abc.supabase.co/storage/v1/object/my%20bucket/a%20b/c%23d.png"
        );
    }

    #[test]
    fn asset_urls_are_accepted_back_as_inputs() {
        let t = TaskId::parse("t.1").unwrap();
        let p = output_path(&t, Step::Concepts, 2);
        for public in [true, false] {
            let url = asset_url(&origin(), "assets", &p, public);
            let o = parse(&url).unwrap();
            assert_eq!(o.bucket(), "assets");
            assert_eq!(o.path(), "concepts/t.1/2.png");
        }
    }

    #[test]
    fn encoding_keeps_safe_characters_only() {
        assert_eq!(encode_segment("aZ09-._~:@!$'()*,;="), "aZ09-._~:@!$'()*,;=");
        assert_eq!(
            encode_segment("a/b%c+d&e?f#g h"),
            "a%2Fb%25c%2Bd%26e%3Ff%23g%20h"
        );
        assert_eq!(encode_path("a b/c"), "a%20b/c");
        assert_eq!(
            percent_decode(&encode_segment("é/%+")).as_deref(),
            Some("é/%+")
        );
    }
}
