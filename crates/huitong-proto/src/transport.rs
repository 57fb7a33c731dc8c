//! Transport conventions every Huitong server follows: how it listens and how it answers an
//! oversized message, and what every gRPC code is called.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tonic::transport::server::TcpIncoming;

/// Accept queue length. The default of 128 resets connections when a proxy in front (nginx
/// opens one upstream connection per concurrent stream) or a load test opens many at once.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Default largest message a Huitong server accepts: 4 MiB, gRPC's customary limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Binds a listener with [`LISTEN_BACKLOG`]. Port 0 picks a free port; ask the listener which.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepted connections with TCP_NODELAY (gRPC messages are small; Nagle only adds latency)
/// and keepalive, so that dead peers are noticed.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// Answers a request message over the configured limit with RESOURCE_EXHAUSTED, as the gRPC
/// status-code guide prescribes, and a message that names the limit.
///
/// tonic refuses such a message before any handler runs, but with OUT_OF_RANGE; this layer
/// sits outside every service and rewrites just that answer.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimitLayer {
    max_bytes: usize,
}

impl MessageLimitLayer {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> tower_layer::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// See [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    max_bytes: usize,
}

/// Prefix of tonic's message for a decoded message over the limit (tonic/src/codec/decode.rs),
/// as it appears in the header: percent-encoded.
const TONIC_TOO_LARGE: &[u8] = b"Error,%20decoded%20message%20length%20too%20large";
const GRPC_OUT_OF_RANGE: &[u8] = b"11";

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for MessageLimit<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let max = self.max_bytes;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let headers = resp.headers_mut();
            let too_large = headers
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() == GRPC_OUT_OF_RANGE)
                && headers
                    .get("grpc-message")
                    .is_some_and(|m| m.as_bytes().starts_with(TONIC_TOO_LARGE));
            if too_large {
                let msg = format!(
                    "the request message is larger than this server accepts ({max} bytes); send less per request"
                );
                if let Ok(v) = http::HeaderValue::from_str(&msg) {
                    headers.insert("grpc-status", http::HeaderValue::from_static("8"));
                    headers.insert("grpc-message", v);
                }
            }
            Ok(resp)
        })
    }
}

/// Server reflection for `services` (plus health and reflection itself), so that grpcurl and
/// dynamic clients need no `.proto` files. Build it twice, with `build_v1` and
/// `build_v1alpha`: grpcurl asks v1, while many clients (Python grpcio's among them) still ask
/// v1alpha only.
pub fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
        .with_service_name(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME)
        .with_service_name(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME);
    for s in services {
        builder = builder.with_service_name(*s);
    }
    builder
}

/// Refuses a call to a Huitong method that carries more than one request message, with
/// UNIMPLEMENTED, as the gRPC status-code guide prescribes for a request cardinality violation.
///
/// Every Huitong method (`/huitong.v1.*`) takes exactly one request. tonic's unary and
/// server-streaming handlers read the first message and drop the rest unread, so a second
/// message, perhaps the one a proxy or a log in between recorded, would be silently ignored.
/// This layer counts the length-prefixed messages in the request body and ends the body with
/// that status as soon as a second one begins. Health and reflection (reflection streams
/// requests) are left alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneRequestLayer;

impl<S> tower_layer::Layer<S> for OneRequestLayer {
    type Service = OneRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OneRequest { inner }
    }
}

/// See [`OneRequestLayer`].
#[derive(Debug, Clone)]
pub struct OneRequest<S> {
    inner: S,
}

/// The path prefix of every Huitong method.
const HUITONG_METHODS: &str = "/huitong.v1.";

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for OneRequest<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if !req.uri().path().starts_with(HUITONG_METHODS) {
            return self.inner.call(req);
        }
        let (parts, body) = req.into_parts();
        let body = tonic::body::Body::new(OneMessageBody {
            inner: body,
            framing: Framing::default(),
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// Where the request body is in gRPC's framing: a 1-byte flag and a 4-byte big-endian length,
/// then that many bytes.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `got` bytes of the 5-byte prefix read; `len` holds the length bytes so far.
    Prefix { got: u8, len: u32 },
    /// Inside the message, with this many bytes to go.
    Message { remaining: u32 },
    /// One whole message read: any further byte starts a second.
    Done,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::Prefix { got: 0, len: 0 }
    }
}

impl Framing {
    /// Advances over `data`; `Err` once a byte past the first message arrives.
    fn advance(&mut self, mut data: &[u8]) -> Result<(), ()> {
        while !data.is_empty() {
            match *self {
                Framing::Prefix { got, len } => {
                    let byte = data[0];
                    data = &data[1..];
                    // Byte 0 is the compression flag; bytes 1 to 4 the length.
                    let len = if got == 0 {
                        len
                    } else {
                        (len << 8) | u32::from(byte)
                    };
                    *self = match got + 1 {
                        5 if len == 0 => Framing::Done,
                        5 => Framing::Message { remaining: len },
                        got => Framing::Prefix { got, len },
                    };
                }
                Framing::Message { remaining } => {
                    let take = data.len().min(remaining as usize);
                    data = &data[take..];
                    // `take` is at most `remaining`, a u32.
                    let remaining = remaining - take as u32;
                    *self = if remaining == 0 {
                        Framing::Done
                    } else {
                        Framing::Message { remaining }
                    };
                }
                Framing::Done => return Err(()),
            }
        }
        Ok(())
    }
}

/// A request body that ends with UNIMPLEMENTED when a second message begins.
struct OneMessageBody {
    inner: tonic::body::Body,
    framing: Framing,
}

impl http_body::Body for OneMessageBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && self.framing.advance(data).is_err()
        {
            return Poll::Ready(Some(Err(tonic::Status::unimplemented(
                "this call carried more than one request message; every Huitong method takes \
                 exactly one: send each request as its own call",
            ))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The canonical upper-case name of a gRPC code, as in the gRPC specification.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod one_request_tests {
    use super::Framing;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len as usize));
        f
    }

    #[test]
    fn one_message_in_any_split_passes_and_a_second_is_caught() {
        let one = frame(300);
        for split in 0..one.len() {
            let mut f = Framing::default();
            f.advance(&one[..split]).unwrap();
            f.advance(&one[split..]).unwrap();
            assert!(matches!(f, Framing::Done), "split at {split}");
            assert!(f.advance(&[0]).is_err());
        }
        let mut two = frame(3);
        two.extend(frame(0));
        assert!(Framing::default().advance(&two).is_err());
        let mut f = Framing::default();
        f.advance(&frame(0)).unwrap();
        assert!(matches!(f, Framing::Done));
    }
}
