//! A connection's part in the metrics (`plugin/metrics.rs` has the region
//! and its layout): its entry in the worker's slot and its state, carried
//! in the connection's [`ConnIo`](super::conn_io::ConnIo). Without the
//! metrics region every method is one test of `slot`.

use std::net::SocketAddr;
use std::time::SystemTime;

use axkit_http::RequestHead;

use crate::plugin::metrics::{ConnState, Slot};

/// What the metrics know of one connection.
pub(crate) struct ConnTrack {
    slot: Option<&'static Slot>,
    entry: u16,
    state: ConnState,
}

impl ConnTrack {
    /// A connection nobody counts.
    pub fn none() -> ConnTrack {
        ConnTrack {
            slot: None,
            entry: u16::MAX,
            state: ConnState::Reading,
        }
    }

    /// A connection accepted by a worker with `slot`.
    pub fn open(slot: Option<&'static Slot>, id: u64, peer: SocketAddr) -> ConnTrack {
        match slot {
            Some(s) => ConnTrack {
                slot,
                entry: s.open(id, peer),
                state: ConnState::Reading,
            },
            None => ConnTrack::none(),
        }
    }

    /// A request's head was read: its handling begins.
    #[inline]
    pub fn request(&mut self, head: &RequestHead, started: SystemTime) {
        if let Some(s) = self.slot {
            s.request(self.entry, self.state, head.request_line(), started);
            self.state = ConnState::Handler;
        }
    }

    /// The request's handler waits for events to send (`Context::set_waiting`).
    pub fn set(&mut self, to: ConnState) {
        if let Some(s) = self.slot {
            s.set_state(self.entry, self.state, to);
            self.state = to;
        }
    }

    /// The response went out: count it under `series` (with `status`, the
    /// time since `started`, `bytes` of body and the plugin that answered),
    /// and the connection is idle again.
    #[inline]
    pub fn done(
        &mut self,
        series: u32,
        status: u16,
        started: SystemTime,
        bytes: u64,
        answered: u16,
    ) {
        if let Some(s) = self.slot {
            let micros = started.elapsed().map_or(0, |d| d.as_micros() as u64);
            s.count(series, status, micros, bytes, answered);
            s.set_state(self.entry, self.state, ConnState::Idle);
            self.state = ConnState::Idle;
        }
    }
}

impl Drop for ConnTrack {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            s.close(self.entry, self.state);
        }
    }
}
