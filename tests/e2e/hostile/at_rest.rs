//! Hostile cases: personal data at rest in the data directory.
