//! The standing hostile-input suite: one test per hole a hostile tester found, so that none
//! comes back. Each module is one area of attack; each test is named after what it guards.
//!
//! Cases of the first round live beside the feature they guard (`access`, `audit`, `exchange`,
//! `events`, ...); cases found since, and every case of the hardening round, live here.

// A failed set-up step is a failed test: panicking with the reason is the right report here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod at_rest;
mod connections;
mod decoders;
mod log_evidence;
mod policy;
