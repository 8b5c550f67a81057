//! AI providers over `fetch`: wire formats and classification live in `core::{openai, tripo}`;
//! these modules only send the requests and hand back replies.

pub mod openai;
pub mod tripo;
