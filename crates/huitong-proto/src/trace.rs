//! W3C Trace Context (`traceparent`) for following one exchange from consumer to broker to
//! adapter in each party's logs, and in an OpenTelemetry backend if one reads those logs.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The metadata key, as gRPC carries it.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id and the id of the span that is the parent of the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

/// Not for secrets: ids only need to be unlikely to collide. std's per-process random hasher
/// keys, mixed with a counter, give that without another dependency.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

fn nonzero(mut f: impl FnMut() -> u64) -> u64 {
    loop {
        let v = f();
        if v != 0 {
            return v;
        }
    }
}

impl TraceContext {
    /// A new trace, for a request that arrived without one.
    pub fn new_root() -> TraceContext {
        let hi = u128::from(random_u64());
        let lo = u128::from(nonzero(random_u64));
        TraceContext {
            trace_id: (hi << 64) | lo,
            span_id: nonzero(random_u64),
            sampled: true,
        }
    }

    /// Parses a `traceparent` header (version 00); anything malformed is ignored, as the spec
    /// asks, by returning None.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return None;
        };
        if version.len() != 2
            || *version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(lower_hex(version) && lower_hex(trace) && lower_hex(span) && lower_hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context for the next hop: same trace, a new span id.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: nonzero(random_u64),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits, as logs and tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The trace context of a gRPC request, if it carries a valid one.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<TraceContext> {
        metadata
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
    }

    /// Sets this context as the request's `traceparent`.
    pub fn inject(&self, metadata: &mut tonic::metadata::MetadataMap) {
        if let Ok(v) = self.to_string().parse() {
            metadata.insert(TRACEPARENT, v);
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// Makes `span` a child of `ctx` for OpenTelemetry, so that exported spans join the caller's
/// trace. Without an OpenTelemetry layer installed (no OTLP export configured) it does nothing.
pub fn link_span(span: &tracing::Span, ctx: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let remote = SpanContext::new(
        TraceId::from(ctx.trace_id),
        SpanId::from(ctx.span_id),
        if ctx.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_round_trips() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(h).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.to_string(), h);
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for h in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(h).is_none(), "{h:?} was accepted");
        }
    }

    #[test]
    fn new_roots_differ() {
        assert_ne!(
            TraceContext::new_root().trace_id,
            TraceContext::new_root().trace_id
        );
    }
}
