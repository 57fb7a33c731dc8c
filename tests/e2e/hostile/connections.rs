//! Hostile cases: connections, handshakes, certificates and revocation on open streams.
