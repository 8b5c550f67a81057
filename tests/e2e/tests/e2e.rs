//! End-to-end suite: one `wrangler dev` and one local stack for the whole run, every case a
//! libtest trial (so the output ends with libtest's `test result: … N passed` line).

mod api;
mod auth;
mod basics;
mod client;
mod concepts;
mod docs;
mod limits;
mod live;
mod models;
mod playground;
mod security;
mod support;
mod tripo_v3;

use libtest_mimic::{Arguments, Trial};
use support::Ctx;

fn main() {
    let args = Arguments::from_args();
    let ctx = match Ctx::start() {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            eprintln!("e2e: could not start the environment: {e}");
            std::process::exit(1);
        }
    };
    let mut trials: Vec<Trial> = Vec::new();
    for (name, case) in basics::cases()
        .into_iter()
        .chain(api::cases())
        .chain(client::cases())
        .chain(auth::cases())
        .chain(concepts::cases())
        .chain(docs::cases())
        .chain(limits::cases())
        .chain(live::cases())
        .chain(models::cases())
        .chain(playground::cases())
        .chain(security::cases())
        .chain(tripo_v3::cases())
    {
        let ctx = ctx.clone();
        trials.push(Trial::test(name, move || case(&ctx)));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!("e2e: wrangler log tail:\n{}", ctx.worker_log_tail(60));
    }
    match std::sync::Arc::try_unwrap(ctx) {
        Ok(ctx) => ctx.stop(),
        Err(_) => eprintln!("e2e: context still shared at exit; processes are killed on drop"),
    }
    conclusion.exit();
}
