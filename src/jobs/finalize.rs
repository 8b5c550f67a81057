//! The finalize job (SPEC §6 "Finalize"): the finished model streamed from Tripo into Storage.

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
