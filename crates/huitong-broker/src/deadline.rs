//! The time an exchange may take: the consumer's deadline, capped by the broker.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// Kept back from the consumer's deadline so that the broker answers DEADLINE_EXCEEDED itself,
/// naming the department, before tonic's own enforcement of `grpc-timeout` (which runs outside
/// every layer we can add and answers a bare CANCELLED) fires: a tenth of the deadline, at
/// least 5 ms and at most 50 ms, so that a busy machine's scheduling delay does not lose the race.
fn answer_margin(consumer: Duration) -> Duration {
    (consumer / 10).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// When the exchange must be answered by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The consumer's `grpc-timeout`, if any and shorter than `cap`, else `cap`.
    pub fn from_request(metadata: &MetadataMap, cap: Duration) -> Self {
        let now = Instant::now();
        let budget = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(cap, |t| t.saturating_sub(answer_margin(t)).min(cap));
        Self { at: now + budget }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Parses the gRPC wire form: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(s: &str) -> Option<Duration> {
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }

    #[test]
    fn the_shorter_of_consumer_and_cap_wins() {
        let mut md = MetadataMap::new();
        let cap = Duration::from_secs(5);
        assert!(Deadline::from_request(&md, cap).remaining() > Duration::from_secs(4));
        md.insert("grpc-timeout", "100m".parse().unwrap());
        assert!(Deadline::from_request(&md, cap).remaining() <= Duration::from_millis(100));
        md.insert("grpc-timeout", "60S".parse().unwrap());
        assert!(Deadline::from_request(&md, cap).remaining() <= cap);
    }
}
