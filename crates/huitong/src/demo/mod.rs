//! `huitong demo`: a three-department exchange on one machine.

#[allow(dead_code)]
pub mod data;
