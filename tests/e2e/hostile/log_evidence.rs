//! Hostile cases: a tampered or full exchange log; evidence is never rewritten.
