//! Request handlers: one module per group of endpoints. Each validates with `core`, acts through
//! `supabase`/`providers`/the task Durable Object, and answers JSON or an `ApiError`.

pub mod generate;
pub mod health;
pub mod live;
pub mod playground;
pub mod status;
