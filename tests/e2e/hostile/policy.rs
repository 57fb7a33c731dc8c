//! Hostile cases: policy walked around (filters on masked fields, subject reports, small gaps).
