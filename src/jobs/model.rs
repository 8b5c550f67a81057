//! The Tripo run job (SPEC §6 "Run"): rows `processing` → inputs uploaded to Tripo for file
//! tokens → the task created with only the fields Tripo documents → its id stored in the DO
//! (which arms the polling alarm) and on the row.

use super::Job;
use crate::core::retry::{Dependency, Failure, FailureClass};

pub async fn run(job: &Job<'_>) -> Result<(), Failure> {
    let _ = job;
    Err(Failure::new(
        Dependency::Tripo,
        FailureClass::Rejected,
        "3D model jobs are not available yet",
    ))
}
