//! The I/O half of [`Context`]: reading the request body (whole or in
//! pieces, answering `Expect: 100-continue`), and writing the response,
//! whole, streamed with backpressure, or from a file with sendfile.

use std::io::{self, IoSlice};

use axkit_http::Version;
use bytes::{Bytes, BytesMut};

use crate::plugin::{Body, BodyChunk, Context, Hook, Outcome};
use crate::server::conn_io::{bodiless, BodyError, BodyState, OutFraming};
use crate::server::worker::run_write_body_data;

impl Context {
    /// A write_body_data filter rewrites `chunk.data`; writing from it would
    /// run the filters again, without end.
    fn not_filtering(&self) -> io::Result<()> {
        if self.io.filtering {
            return Err(io::Error::other(
                "a write_body_data hook cannot write: it rewrites the chunk it is given",
            ));
        }
        Ok(())
    }

    /// The next piece of the request body, or `None` at its end. The first
    /// call answers `Expect: 100-continue`. On error the connection will be
    /// closed after the response; return the error as the hook's outcome.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, BodyError> {
        let io = &mut self.io;
        if io.body_detached {
            return Ok(None);
        }
        if io.expect_continue {
            io.expect_continue = false;
            if !io.head_sent {
                let mut bufs = [IoSlice::new(b"HTTP/1.1 100 Continue\r\n\r\n")];
                if io.write_all(&mut bufs).await.is_err() {
                    io.body = BodyState::Broken;
                    return Err(BodyError {
                        status: 400,
                        reason: "client went away",
                    });
                }
            }
        }
        let timeout = io.body_timeout;
        let chunk = io.next_body(timeout).await?;
        if let Some(data) = &chunk {
            io.body_read += data.len() as u64;
            // Only a chunked body can get here past its limit: a
            // Content-Length over it was refused before reading.
            if io.body_read > io.max_body {
                io.body = BodyState::Broken;
                return Err(BodyError {
                    status: 413,
                    reason: "request body too large",
                });
            }
        }
        Ok(chunk)
    }

    /// The whole request body (bounded by MaxRequestBody).
    pub async fn read_body_all(&mut self) -> Result<Bytes, BodyError> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.read_body().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// Stream a piece of the response body. The first call sends the head
    /// (from `ctx.response`): with the Content-Length the plugin set, or
    /// chunked. Waits while the client is slow (backpressure).
    pub async fn write(&mut self, data: impl Into<Bytes>) -> io::Result<()> {
        self.not_filtering()?;
        let mut chunk = BodyChunk {
            data: data.into(),
            last: false,
        };
        if !self.io.head_sent {
            self.hold_streaming_head();
        }
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            if let Outcome::Error(m) = filter_outcome(run_write_body_data(self, &mut chunk).await) {
                self.io.close = true;
                return Err(io::Error::other(m));
            }
        }
        self.io_write_body(&chunk.data).await
    }

    /// Stream `len` bytes of `file` from `offset` as the next piece of the
    /// response body, like [`Context::write`] (the first call sends the
    /// head). Without body filters the bytes go out with sendfile, capped
    /// per call, the head or chunk size held back with MSG_MORE to leave in
    /// the same segment; filters see bytes, so then the file goes through
    /// memory, 64 KiB at a time, read on the blocking pool (never on the
    /// event loop). A file that ends early is an `UnexpectedEof` error and
    /// the connection will close: nothing past the new end is ever sent.
    pub async fn write_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.not_filtering()?;
        if !self.io.head_sent {
            self.hold_streaming_head();
        }
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            use std::os::unix::fs::FileExt;
            let mut pos = offset;
            let end = offset + len;
            let mut file = file.try_clone()?;
            let mut buf = vec![0u8; (len as usize).min(64 * 1024)];
            while pos < end {
                let want = ((end - pos) as usize).min(buf.len());
                let read = tokio::task::spawn_blocking(move || {
                    let n = file.read_at(&mut buf[..want], pos);
                    (file, buf, n)
                });
                let n;
                (file, buf, n) = read.await.map_err(io::Error::other)?;
                let n = n?;
                if n == 0 {
                    self.io.close = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while sending",
                    ));
                }
                pos += n as u64;
                self.write(Bytes::copy_from_slice(&buf[..n])).await?;
            }
            return Ok(());
        }
        let io = &mut self.io;
        if io.is_head || len == 0 {
            return Ok(());
        }
        if io
            .announced
            .is_some_and(|limit| io.body_bytes_sent + len > limit)
        {
            io.close = true;
            return Err(io::Error::other(
                "response body longer than its Content-Length",
            ));
        }
        let mut before = std::mem::take(&mut io.pending_head);
        if io.chunked_out {
            axkit_http::write_chunk_header(&mut before, len as usize);
        }
        io.write_head_more(&before).await?;
        let result = io.sendfile(file, offset, len).await;
        if result.is_err() {
            io.close = true;
        }
        result?;
        io.body_bytes_sent += len;
        if io.chunked_out {
            io.write_all(&mut [IoSlice::new(b"\r\n")]).await?;
        }
        Ok(())
    }

    /// Send bytes exactly as given: no head is generated and nothing is
    /// framed or filtered, because the caller writes the whole response,
    /// status line included (an `nph-` CGI script). Only the sender knows
    /// where such a body ends, so the connection closes after it.
    pub async fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.close = true;
        self.io.head_sent = true;
        self.io.body_bytes_sent += data.len() as u64;
        self.io.write_all(&mut [IoSlice::new(data)]).await
    }

    /// Resolves when the client closes its connection (or it fails), so
    /// that a handler waiting on slow work can give up. Call it once the
    /// request body has been read: it stays pending when the client has
    /// sent more bytes (a pipelined request says nothing about leaving).
    pub async fn client_closed(&self) {
        if self.io.buf.is_empty() {
            let mut probe = [0u8; 1];
            if let Ok(0) | Err(_) = self.io.stream.peek(&mut probe).await {
                return;
            }
        }
        std::future::pending().await
    }

    /// Last chance to decide that the connection closes after this
    /// response, so that the head can say so.
    pub(super) fn decide_close(&mut self) {
        // An ErrorDocument page is served with the original error status.
        if let Some(status) = self.status_override {
            if !self.io.head_sent && self.response.status == 200 {
                self.response.status = status;
            }
        }
        // Draining: let clients move to a worker that stays.
        if self.worker.shutting_down.get() {
            self.io.close = true;
        }
        if self.io.body_never_asked_for() {
            self.io.close = true;
        }
    }

    /// Commit to the head of a streamed response; it is written with the
    /// first piece of body (see `ConnIo::pending_head`).
    pub(super) fn hold_streaming_head(&mut self) {
        self.decide_close();
        let status = self.response.status;
        let filtered = !self.location.chain(Hook::WriteBodyData).is_empty();
        let declared = self
            .response
            .headers
            .get("Content-Length")
            .and_then(|v| axkit_http::parse_content_length(v.as_bytes()));
        let framing = if bodiless(status) {
            OutFraming::None
        } else if let (Some(n), false) = (declared, filtered) {
            OutFraming::Length(n)
        } else if self.io.version == Version::Http11 {
            OutFraming::Chunked
        } else {
            self.io.close = true;
            OutFraming::UntilClose
        };
        self.io.chunked_out = framing == OutFraming::Chunked && !self.io.is_head;
        self.io.announced = match framing {
            OutFraming::Length(n) => Some(n),
            OutFraming::None => Some(0),
            _ => None,
        };
        let head = self.io.encode_head(status, &self.response.headers, framing);
        self.io.head_sent = true;
        self.io.pending_head = head;
    }

    pub(super) async fn io_write_body(&mut self, data: &[u8]) -> io::Result<()> {
        let io = &mut self.io;
        if io.is_head || data.is_empty() {
            return Ok(());
        }
        if let Some(limit) = io.announced {
            if io.body_bytes_sent + data.len() as u64 > limit {
                io.close = true;
                return Err(io::Error::other(
                    "response body longer than its Content-Length",
                ));
            }
        }
        io.body_bytes_sent += data.len() as u64;
        if io.chunked_out {
            let mut size = Vec::with_capacity(18);
            axkit_http::write_chunk_header(&mut size, data.len());
            io.write_all(&mut [
                IoSlice::new(&size),
                IoSlice::new(data),
                IoSlice::new(b"\r\n"),
            ])
            .await
        } else {
            io.write_all(&mut [IoSlice::new(data)]).await
        }
    }

    /// Finish a streamed response: flush filters, send the last chunk.
    pub(super) async fn finish_stream(&mut self) -> io::Result<()> {
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            let mut chunk = BodyChunk {
                data: Bytes::new(),
                last: true,
            };
            if let Outcome::Error(m) = filter_outcome(run_write_body_data(self, &mut chunk).await) {
                self.io.close = true;
                return Err(io::Error::other(m));
            }
            self.io_write_body(&chunk.data).await?;
        }
        let io = &mut self.io;
        if io.chunked_out {
            io.write_all(&mut [IoSlice::new(axkit_http::LAST_CHUNK)])
                .await?;
        } else {
            // Flushes a head still held back (a response with no body).
            io.write_all(&mut []).await?;
        }
        if let Some(n) = io.announced {
            if io.body_bytes_sent < n && !io.is_head {
                // Fewer bytes than announced: the client must not wait for more.
                io.close = true;
                return Err(io::Error::other(
                    "response body shorter than its Content-Length",
                ));
            }
        }
        Ok(())
    }

    /// Send `ctx.response` in full (the usual, non-streamed case).
    pub(super) async fn send_response(&mut self) -> io::Result<()> {
        let status = self.response.status;
        let filtered = !self.location.chain(Hook::WriteBodyData).is_empty();
        let body = std::mem::take(&mut self.response.body);
        if bodiless(status) {
            let head = self
                .io
                .encode_head(status, &self.response.headers, OutFraming::None);
            self.io.head_sent = true;
            return self.io.write_all(&mut [IoSlice::new(&head)]).await;
        }
        match body {
            Body::File { file, offset, len } if filtered => {
                // Filters see bytes: write_file streams it through memory.
                self.write_file(&file, offset, len).await?;
                if !self.io.head_sent {
                    self.hold_streaming_head();
                }
                self.finish_stream().await
            }
            Body::File { file, offset, len } => {
                // Plugins that want a small file sent from memory in one
                // write hand over `Body::Bytes` (serve_file's SmallFileSize);
                // a file body always goes out with sendfile, its head held
                // back with MSG_MORE so both leave in one segment.
                let head =
                    self.io
                        .encode_head(status, &self.response.headers, OutFraming::Length(len));
                self.io.head_sent = true;
                if self.io.is_head {
                    return self.io.write_all(&mut [IoSlice::new(&head)]).await;
                }
                self.io.write_head_more(&head).await?;
                let result = self.io.sendfile(&file, offset, len).await;
                if result.is_err() {
                    self.io.close = true;
                }
                self.io.body_bytes_sent = len;
                result
            }
            Body::Bytes(bytes) if filtered => {
                let mut chunk = BodyChunk {
                    data: bytes,
                    last: true,
                };
                if let Outcome::Error(m) =
                    filter_outcome(run_write_body_data(self, &mut chunk).await)
                {
                    return Err(io::Error::other(m));
                }
                self.send_bytes(status, chunk.data).await
            }
            Body::Bytes(bytes) => self.send_bytes(status, bytes).await,
            Body::Empty => self.send_bytes(status, Bytes::new()).await,
        }
    }

    pub(super) async fn send_bytes(&mut self, status: u16, bytes: Bytes) -> io::Result<()> {
        let head = self.io.encode_head(
            status,
            &self.response.headers,
            OutFraming::Length(bytes.len() as u64),
        );
        self.io.head_sent = true;
        if self.io.is_head {
            return self.io.write_all(&mut [IoSlice::new(&head)]).await;
        }
        self.io.body_bytes_sent = bytes.len() as u64;
        self.io
            .write_all(&mut [IoSlice::new(&head), IoSlice::new(&bytes)])
            .await
    }
}

/// Filters may only rewrite; map their outcomes to "carry on" or a failure.
pub(super) fn filter_outcome(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Ok | Outcome::Declined => Outcome::Ok,
        Outcome::Error(m) => Outcome::Error(m),
        Outcome::Status(s) => Outcome::Error(format!("write_body_data returned status {s}")),
        Outcome::Done => Outcome::Error("write_body_data returned DONE".into()),
    }
}
