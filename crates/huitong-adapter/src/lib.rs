//! The adapter SDK.
