//! Faults in the answer's body, REST and gRPC alike: what a broken backend sends after a
//! success status. Applied to the HTTP body frame by frame, so server streams are affected too.
//!
//! - `malformed_body`: the bytes are garbage (for gRPC, inside an intact frame header);
//! - `oversized_body`: 24 MiB of filler, streamed without a length, instead of the answer;
//! - `dribble_ms`: the body arrives eight bytes at a time, this long apart;
//! - `reset_mid_body`: half the first frame, then the stream is reset;
//! - `stall_body`: half the first frame, then nothing ever again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::StreamBody;
use hyper::body::Frame;

use crate::{Faults, ServiceControl};

/// How big an oversized body is: past every limit a BFF should have.
pub const OVERSIZED_BYTES: usize = 24 * 1024 * 1024;
const FILLER_CHUNK: usize = 64 * 1024;
const DRIBBLE_BYTES: usize = 8;

type FrameResult = Result<Frame<Bytes>, std::io::Error>;

fn has_body_faults(faults: &Faults) -> bool {
    faults.malformed_body
        || faults.oversized_body
        || faults.dribble_ms > 0
        || faults.reset_mid_body
        || faults.stall_body
}

/// Axum middleware applying the service's body faults to every answer but health probes.
pub(crate) async fn middleware(State(control): State<Arc<ServiceControl>>, request: Request, next: Next) -> Response {
    let probe = request.uri().path() == "/healthz" || request.uri().path().starts_with("/grpc.health");
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let response = next.run(request).await;
    let faults = control.faults();
    if probe || !has_body_faults(&faults) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    if faults.oversized_body {
        let filler = Bytes::from(vec![b' '; FILLER_CHUNK]);
        let frames = futures::stream::iter(
            (0..OVERSIZED_BYTES / FILLER_CHUNK).map(move |_| FrameResult::Ok(Frame::data(filler.clone()))),
        );
        let header = grpc.then(|| {
            // A gRPC frame that announces the whole filler as one message.
            let mut header = vec![0u8];
            header.extend_from_slice(&u32::try_from(OVERSIZED_BYTES).unwrap_or(u32::MAX).to_be_bytes());
            FrameResult::Ok(Frame::data(Bytes::from(header)))
        });
        let frames = futures::stream::iter(header).chain(frames);
        return Response::from_parts(parts, Body::new(StreamBody::new(frames)));
    }
    let frames = body.into_data_stream_with_trailers(grpc);
    let frames: futures::stream::BoxStream<'static, FrameResult> = if faults.malformed_body {
        let mut first = true;
        frames
            .map(move |frame| {
                let frame = frame?;
                let Ok(data) = frame.into_data() else { return Ok(Frame::data(Bytes::new())) };
                let keep = if std::mem::take(&mut first) && grpc { 5.min(data.len()) } else { 0 };
                let mut garbled = data.to_vec();
                // 0xFF is no valid protobuf tag and no valid start of JSON.
                garbled[keep..].fill(0xFF);
                Ok(Frame::data(Bytes::from(garbled)))
            })
            .boxed()
    } else if faults.dribble_ms > 0 {
        let pause = Duration::from_millis(faults.dribble_ms);
        frames
            .flat_map(|frame| {
                let pieces: Vec<FrameResult> = match frame {
                    Ok(frame) if frame.is_data() => {
                        let data = frame.into_data().unwrap_or_default();
                        data.chunks(DRIBBLE_BYTES).map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece)))).collect()
                    }
                    other => vec![other],
                };
                futures::stream::iter(pieces)
            })
            .then(move |frame| async move {
                tokio::time::sleep(pause).await;
                frame
            })
            .boxed()
    } else {
        // Reset or stall: half of the first data frame, then the fault.
        let reset = faults.reset_mid_body;
        let half = frames.take(1).map(|frame| {
            let data = frame?.into_data().unwrap_or_default();
            Ok(Frame::data(data.slice(..data.len() / 2)))
        });
        let end = futures::stream::once(async move {
            if reset {
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))
            } else {
                std::future::pending().await
            }
        });
        half.chain(end).boxed()
    };
    Response::from_parts(parts, Body::new(StreamBody::new(frames)))
}

/// The body's frames as a stream; trailers kept for gRPC (where they carry the status).
trait IntoFrames {
    fn into_data_stream_with_trailers(self, keep_trailers: bool) -> futures::stream::BoxStream<'static, FrameResult>;
}

impl IntoFrames for Body {
    fn into_data_stream_with_trailers(self, keep_trailers: bool) -> futures::stream::BoxStream<'static, FrameResult> {
        http_body_util::BodyStream::new(self)
            .filter(move |frame| std::future::ready(keep_trailers || frame.as_ref().map_or(true, Frame::is_data)))
            .map(|frame| frame.map_err(std::io::Error::other))
            .boxed()
    }
}
