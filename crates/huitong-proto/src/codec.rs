//! The protobuf codec for every Huitong service.
//!
//! It differs from `tonic_prost::ProstCodec` in one way: a message that does not decode is the
//! caller's mistake, so it is answered with INVALID_ARGUMENT and the message type, where tonic's
//! codec answers INTERNAL.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Protobuf codec that reports undecodable input as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct HuitongCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for HuitongCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for HuitongCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = HuitongDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        HuitongDecoder { _pd: PhantomData }
    }
}

/// Decodes one protobuf message; see [`HuitongCodec`].
#[derive(Debug, Clone)]
pub struct HuitongDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for HuitongDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid {}: {e}; encode it from proto/huitong/v1",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message"),
            ))
        })
    }
}
