//! The documentation (`docs/`) against the running worker, so the two cannot drift:
//!
//! * `docs/api.md` against `GET /openapi.json`: every path and method, every request field of
//!   every endpoint (`components.schemas.*Request.properties`, with required, default and enum
//!   values) and every error code (`components.schemas.Error…code.enum`) is in api.md's marked
//!   tables (`<!-- fields: Schema -->`, `<!-- errors: Error -->`), and api.md names no endpoint,
//!   field or code that the document lacks.
//! * The response tables of api.md against what the worker really answers.
//! * Every ```bash block of api.md that runs `curl` carries `# expect: <status>…` and is run with
//!   `bash` against the worker (`$BASE`, `$TOKEN`, `$SUPABASE_URL`, a fresh `$TASK` per block,
//!   `$IMAGE_URL` / `$IMAGE_URL_2` uploaded inputs of the user); each `curl` prints its status.
//! * `docs/operations.md` lists every log event the code emits (`log::emit` / `job.log`), and
//!   `docs/architecture.md` every setting of `src/core/config.rs` (`SETTINGS`) and `wrangler.toml`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::support::{check, png, Case, CaseResult, Ctx};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "docs::api_md_matches_openapi_json_both_ways",
            api_md_matches_openapi,
        ),
        (
            "docs::api_md_response_tables_match_the_worker",
            response_tables_match_the_worker,
        ),
        (
            "docs::api_md_curl_examples_get_their_documented_status",
            curl_examples,
        ),
        (
            "docs::operations_md_lists_every_log_event",
            log_events_listed,
        ),
        ("docs::architecture_md_lists_every_setting", settings_listed),
    ]
}

// ---------------------------------------------------------------------------------------------
// Reading the docs
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    e2e::repo_root()
}

fn read(rel: &str) -> Result<String, Failed> {
    let p = root().join(rel);
    std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()).into())
}

/// A Markdown table: its header cells and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The first cell of each row as a code span (`` `name` ``); an error for any other form.
    fn names(&self, what: &str) -> Result<Vec<String>, Failed> {
        self.rows
            .iter()
            .map(|r| {
                let cell = r.first().map(String::as_str).unwrap_or("");
                code_span(cell).ok_or_else(|| {
                    format!("{what}: first cell `{cell}` is not a single `code` span").into()
                })
            })
            .collect()
    }

    /// The names of rows whose type cell says `optional`: fields an answer may leave out.
    fn optional_names(&self) -> BTreeSet<String> {
        self.rows
            .iter()
            .filter(|r| r.get(1).is_some_and(|t| t.contains("optional")))
            .filter_map(|r| r.first().and_then(|c| code_span(c)))
            .collect()
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }
}

fn code_span(cell: &str) -> Option<String> {
    let inner = cell.trim().strip_prefix('`')?.strip_suffix('`')?;
    (!inner.is_empty() && !inner.contains('`')).then(|| inner.to_owned())
}

/// Cells of a table row, split on `|` not escaped as `\|`.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in line.trim().chars() {
        if c == '|' && !escaped {
            cells.push(cur.trim().to_owned());
            cur.clear();
        } else {
            cur.push(c);
        }
        escaped = c == '\\';
    }
    cells.push(cur.trim().to_owned());
    if cells.first().is_some_and(String::is_empty) {
        cells.remove(0);
    }
    if cells.last().is_some_and(String::is_empty) {
        cells.pop();
    }
    cells
}

/// The tables that follow a `<!-- {kind}: NAME -->` marker, by NAME.
fn marked_tables(md: &str, kind: &str) -> Result<Vec<(String, Table)>, Failed> {
    let lines: Vec<&str> = md.lines().collect();
    let prefix = format!("<!-- {kind}:");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix(&prefix) else {
            continue;
        };
        let name = rest.trim().trim_end_matches("-->").trim().to_owned();
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        if j + 1 >= lines.len() || !lines[j].trim_start().starts_with('|') {
            return Err(format!("marker `{}` is not followed by a table", line.trim()).into());
        }
        let header = split_row(lines[j]);
        let mut rows = Vec::new();
        let mut k = j + 2; // skip the |---| line
        while k < lines.len() && lines[k].trim_start().starts_with('|') {
            rows.push(split_row(lines[k]));
            k += 1;
        }
        out.push((name, Table { header, rows }));
    }
    Ok(out)
}

/// The ```bash blocks of a Markdown text, with the line each starts on.
fn bash_blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in md.lines().enumerate() {
        let t = line.trim_start();
        match &mut current {
            None if t.starts_with("```bash") => current = Some((n + 1, String::new())),
            Some(_) if t.starts_with("```") => {
                if let Some(b) = current.take() {
                    out.push(b);
                }
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

/// `/tasks/<anything>/<x>` → `/tasks/{task_id}/<x>`.
fn normalize(path: &str) -> String {
    let path = path.trim_end_matches(['.', ',', ':', ';']);
    if let Some(rest) = path.strip_prefix("/tasks/") {
        if let Some((_, tail)) = rest.split_once('/') {
            return format!("/tasks/{{task_id}}/{tail}");
        }
    }
    path.to_owned()
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./{}$*…".contains(c)
}

/// Every worker path api.md mentions: `/generate/x`, `/tasks/x/y`, `METHOD /path` and `$BASE/path`.
fn mentioned_paths(md: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let take = |s: &str| -> String { s.chars().take_while(|c| path_char(*c)).collect() };
    for (i, _) in md.match_indices("/generate/") {
        let name: String = md[i + "/generate/".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !name.is_empty() {
            found.insert(format!("/generate/{name}"));
        }
    }
    for (i, _) in md.match_indices("/tasks/") {
        let p = take(&md[i..]);
        if p.matches('/').count() >= 3 {
            found.insert(normalize(&p));
        }
    }
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        for (i, _) in md.match_indices(&format!("{method} /")) {
            let before_ok = i == 0 || !md[..i].ends_with(|c: char| c.is_ascii_alphanumeric());
            let p = take(&md[i + method.len() + 1..]);
            // Provider and Supabase paths (`POST /v1/images/edits`, `GET /task/{id}`, …) are not ours.
            let foreign = ["/storage/", "/rest/", "/auth/", "/v1/", "/task/", "/upload"]
                .iter()
                .any(|f| p.starts_with(f));
            if before_ok && !foreign && !p.contains('*') {
                found.insert(normalize(&p));
            }
        }
    }
    for (i, _) in md.match_indices("$BASE") {
        let p = take(&md[i + "$BASE".len()..]);
        if p.starts_with('/') {
            found.insert(normalize(&p));
        }
    }
    found
}

fn openapi(ctx: &Ctx) -> Result<Value, Failed> {
    let r = ctx.call("GET", "/openapi.json", &[], None)?;
    check(r.status == 200, || {
        format!("/openapi.json: {} {}", r.status, r.text)
    })?;
    r.json()
}

fn sorted(v: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

fn diff(what: &str, docs: &BTreeSet<String>, truth: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<_> = truth.difference(docs).collect();
    let extra: Vec<_> = docs.difference(truth).collect();
    (!missing.is_empty() || !extra.is_empty())
        .then(|| format!("{what}: missing from the docs {missing:?}; not in the truth {extra:?}"))
}

/// The enum values of a property schema (directly or inside `anyOf`).
fn enum_values(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut visit = |s: &Value| {
        if let Some(e) = s["enum"].as_array() {
            out.extend(e.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
    };
    visit(schema);
    if let Some(any) = schema["anyOf"].as_array() {
        for s in any {
            visit(s);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

fn api_md_matches_openapi(ctx: &Ctx) -> CaseResult {
    let md = read("docs/api.md")?;
    let doc = openapi(ctx)?;
    let mut problems: Vec<String> = Vec::new();

    // Paths and methods, both ways.
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, ops) in &paths {
        for method in ops
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let line = format!("{} {path}", method.to_ascii_uppercase());
            if !md.contains(&line) {
                problems.push(format!("api.md never says `{line}`"));
            }
        }
    }
    let known: BTreeSet<String> = paths.keys().cloned().collect();
    for p in mentioned_paths(&md) {
        if !known.contains(&p) {
            problems.push(format!(
                "api.md mentions `{p}`, which /openapi.json does not have"
            ));
        }
    }

    // Request fields of every endpoint, both ways, with required / default / enum values.
    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let tables = marked_tables(&md, "fields")?;
    for name in schemas.keys().filter(|k| k.ends_with("Request")) {
        if !tables.iter().any(|(n, _)| n == name) {
            problems.push(format!("api.md has no `<!-- fields: {name} -->` table"));
        }
    }
    for (name, table) in &tables {
        let Some(schema) = schemas.get(name) else {
            problems.push(format!(
                "api.md has a table for `{name}`, which /openapi.json does not define"
            ));
            continue;
        };
        let props = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let documented = table.names(name)?;
        let truth = sorted(props.keys().cloned());
        if name.ends_with("Request") {
            problems.extend(diff(
                &format!("fields of {name}"),
                &sorted(documented.clone()),
                &truth,
            ));
        } else {
            // Response tables may omit declared fields the worker does not send (checked live).
            let extra: Vec<_> = documented.iter().filter(|f| !truth.contains(*f)).collect();
            if !extra.is_empty() {
                problems.push(format!(
                    "{name}: api.md documents {extra:?}, which /openapi.json lacks"
                ));
            }
            continue;
        }
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let (Some(req_col), Some(def_col)) = (table.column("required"), table.column("default"))
        else {
            problems.push(format!(
                "{name}: the table needs `required` and `default` columns"
            ));
            continue;
        };
        for (row, field) in table.rows.iter().zip(&documented) {
            let Some(prop) = props.get(field) else {
                continue;
            };
            let says_required = row.get(req_col).is_some_and(|c| c.starts_with("yes"));
            if says_required != required.contains(field) {
                problems.push(format!(
                    "{name}.{field}: api.md says required = {says_required}, /openapi.json the opposite"
                ));
            }
            let default = prop.get("default").or_else(|| {
                prop["anyOf"]
                    .as_array()
                    .and_then(|a| a.iter().find_map(|s| s.get("default")))
            });
            if let Some(d) = default {
                let cell = row.get(def_col).map(String::as_str).unwrap_or("");
                if !cell.contains(&d.to_string()) {
                    problems.push(format!(
                        "{name}.{field}: default {d} is not in the default cell `{cell}`"
                    ));
                }
            }
            let text = row.join(" | ");
            for v in enum_values(prop) {
                if !text.contains(&format!("`{v}`")) {
                    problems.push(format!("{name}.{field}: value `{v}` is not listed"));
                }
            }
        }
    }

    // Error codes, both ways.
    let codes: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    check(!codes.is_empty(), || {
        "no error codes in /openapi.json".into()
    })?;
    let error_tables = marked_tables(&md, "errors")?;
    check(error_tables.len() == 1, || {
        format!(
            "expected one `<!-- errors: Error -->` table, found {}",
            error_tables.len()
        )
    })?;
    let documented = sorted(error_tables[0].1.names("errors")?);
    problems.extend(diff("error codes", &documented, &codes));

    check(problems.is_empty(), || {
        format!(
            "docs/api.md and /openapi.json disagree:\n  {}",
            problems.join("\n  ")
        )
    })
}

fn object_keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn response_tables_match_the_worker(ctx: &Ctx) -> CaseResult {
    let md = read("docs/api.md")?;
    let tables = marked_tables(&md, "fields")?;
    let find = |name: &str| -> Result<&Table, Failed> {
        tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("api.md has no `<!-- fields: {name} -->` table").into())
    };
    let table =
        |name: &str| -> Result<BTreeSet<String>, Failed> { Ok(sorted(find(name)?.names(name)?)) };
    // A documented optional field absent from an answer is no disagreement.
    let present = |name: &str, keys: BTreeSet<String>| -> Result<BTreeSet<String>, Failed> {
        let optional = find(name)?.optional_names();
        let mut documented = table(name)?;
        documented.retain(|k| keys.contains(k) || !optional.contains(k));
        Ok(documented)
    };
    let task = ctx.task_id("docs-live");
    let url = ctx.upload_input(
        &ctx.alice,
        &format!("{}/docs-live.png", ctx.run),
        "image/png",
        png(""),
    )?;
    let r = ctx.generate(
        &ctx.alice,
        "image-to-image",
        &json!({"task_id": task, "input_image_asset_url": url, "prompt": "a docs chair"}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let mut problems = Vec::new();
    problems.extend(diff(
        "submit answer",
        &table("SubmitResponse")?,
        &object_keys(&r.json()?),
    ));
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a docs chair"}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let s = ctx.status(&ctx.alice, &task, "")?;
    check(s.status == 200, || {
        format!("status: {} {}", s.status, s.text)
    })?;
    let v = s.json()?;
    problems.extend(diff(
        "status answer",
        &present("StatusResponse", object_keys(&v))?,
        &object_keys(&v),
    ));
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    check(steps.len() == 2, || format!("expected two steps: {v}"))?;
    for st in &steps {
        problems.extend(diff(
            "status steps[]",
            &present("StepStatus", object_keys(st))?,
            &object_keys(st),
        ));
    }
    check(problems.is_empty(), || {
        format!(
            "docs/api.md and the worker's answers disagree:\n  {}",
            problems.join("\n  ")
        )
    })
}

/// Runs every curl block of api.md and compares the statuses with its `# expect:` line.
fn curl_examples(ctx: &Ctx) -> CaseResult {
    let md = read("docs/api.md")?;
    let blocks: Vec<(usize, String)> = bash_blocks(&md)
        .into_iter()
        .filter(|(_, b)| b.contains("curl"))
        .collect();
    check(blocks.len() >= 15, || {
        format!("only {} curl examples in api.md", blocks.len())
    })?;
    let front = ctx.upload_input(
        &ctx.alice,
        &format!("{}/docs-front.png", ctx.run),
        "image/png",
        png(""),
    )?;
    let left = ctx.upload_input(
        &ctx.alice,
        &format!("{}/docs-left.png", ctx.run),
        "image/png",
        png(""),
    )?;
    // Each `curl` prints only its status on stdout and its body on stderr (shown on a failure, or
    // for every block with DOCS_SHOW_BODIES=1); the block's own options still apply.
    let prelude = r#"set -u
curl() {
  local body rc
  body=$(mktemp)
  command curl -s -o "$body" -w '%{http_code}\n' --max-time 60 "$@"; rc=$?
  cat "$body" >&2; echo >&2; rm -f "$body"
  return $rc
}
"#;
    let show = std::env::var_os("DOCS_SHOW_BODIES").is_some();
    let mut failures = Vec::new();
    for (line, block) in &blocks {
        let Some(expect) = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("# expect:"))
            .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        else {
            failures.push(format!(
                "api.md line {line}: a curl block without `# expect:`"
            ));
            continue;
        };
        let task = ctx.task_id("docs");
        // A draft of alice's own for the refine example (`$DRAFT`).
        let draft = uuid::Uuid::new_v4().to_string();
        ctx.seed_model_row(&ctx.alice, &ctx.task_id("docs-draft"), &draft)?;
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{prelude}{block}"))
            .env("BASE", &ctx.base)
            .env("TOKEN", &ctx.alice.token)
            .env("SUPABASE_URL", &ctx.stack.supabase_url)
            .env("TASK", &task)
            .env("DRAFT", &draft)
            .env("IMAGE_URL", &front)
            .env("IMAGE_URL_2", &left)
            .output()
            .map_err(|e| format!("cannot run bash: {e}"))?;
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if show {
            eprintln!(
                "--- api.md line {line}: {got:?}\n{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if got != expect || !out.status.success() {
            failures.push(format!(
                "api.md line {line} (task {task}): expected {expect:?}, got {got:?} ({}) {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                block.lines().take(3).collect::<Vec<_>>().join("\n")
            ));
        }
    }
    check(failures.is_empty(), || {
        format!(
            "{} of {} curl examples failed:\n{}",
            failures.len(),
            blocks.len(),
            failures.join("\n\n")
        )
    })
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
}

/// The event name of a `log::emit(level, "event", …)` / `job.log(level, "event", …)` /
/// `w.event(level, "event", …)` call that
/// starts at `args` (just after the opening parenthesis): the second argument, if it is a literal.
fn event_literal(args: &str) -> Option<String> {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut second = None;
    for (i, c) in args.char_indices() {
        match c {
            '"' => in_str = !in_str,
            _ if in_str => {}
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                second = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let rest = args[second?..].trim_start();
    let lit = rest.strip_prefix('"')?;
    let end = lit.find('"')?;
    Some(lit[..end].to_owned())
}

fn log_events_listed(_ctx: &Ctx) -> CaseResult {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut events = BTreeSet::new();
    for f in files.iter().filter(|f| !f.ends_with("log.rs")) {
        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        for needle in ["log::emit(", ".log(", ".event("] {
            for (i, _) in text.match_indices(needle) {
                if let Some(ev) = event_literal(&text[i + needle.len()..]) {
                    events.insert(ev);
                }
            }
        }
    }
    check(events.len() >= 20, || {
        format!("found only {} log events in src/: {events:?}", events.len())
    })?;
    let md = read("docs/operations.md")?;
    let tables = marked_tables(&md, "events")?;
    check(tables.len() == 1, || {
        format!(
            "expected one `<!-- events: log -->` table in operations.md, found {}",
            tables.len()
        )
    })?;
    let documented = sorted(tables[0].1.names("events")?);
    match diff(
        "log events of src/ vs docs/operations.md",
        &documented,
        &events,
    ) {
        None => Ok(()),
        Some(d) => Err(d.into()),
    }
}

fn settings_listed(_ctx: &Ctx) -> CaseResult {
    let config = read("src/core/config.rs")?;
    let start = config
        .find("pub const SETTINGS")
        .ok_or("no SETTINGS in src/core/config.rs")?;
    let end = start + config[start..].find("];").ok_or("SETTINGS does not end")?;
    let mut settings = BTreeSet::new();
    for part in config[start..end].split('"').skip(1).step_by(2) {
        if part.starts_with(|c: char| c.is_ascii_uppercase())
            && part
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            settings.insert(part.to_owned());
        }
    }
    check(settings.len() >= 15, || format!("settings: {settings:?}"))?;
    let md = read("docs/architecture.md")?;
    let tables = marked_tables(&md, "settings")?;
    check(tables.len() == 1, || {
        format!(
            "expected one `<!-- settings: config -->` table in architecture.md, found {}",
            tables.len()
        )
    })?;
    let documented = sorted(tables[0].1.names("settings")?);
    let mut problems: Vec<String> = diff(
        "settings of src/core/config.rs vs docs/architecture.md",
        &documented,
        &settings,
    )
    .into_iter()
    .collect();
    // Every [vars] entry of wrangler.toml is documented.
    let toml = read("wrangler.toml")?;
    let mut in_vars = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_vars = t == "[vars]";
            continue;
        }
        if in_vars {
            if let Some((k, _)) = t.split_once('=') {
                let k = k.trim();
                if !k.starts_with('#') && !documented.contains(k) {
                    problems.push(format!(
                        "wrangler.toml [vars] {k} is not in architecture.md's settings table"
                    ));
                }
            }
        }
    }
    check(problems.is_empty(), || problems.join("\n"))
}
