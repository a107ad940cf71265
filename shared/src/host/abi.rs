//! The proxy-wasm host interface as the driver uses it, every status returned as data.
//!
//! The SDK's `hostcalls` panic on any status they do not expect (a refused `set_property` on Kong, a
//! header write after the headers left on Envoy), and a panic kills the VM. `crate::wasm` implements
//! [`Abi`] over the raw ABI instead; [`super::fake::FakeHost`] implements it natively.
//!
//! [`Host`] is implemented here once for every [`Abi`]: this is where host differences that are not
//! about the request's flow live (create-only shared-data writes, how a request is routed), and where
//! every failed host call is logged and counted.

use super::{authority, Host, HostKind, LogLevel, Route, SharedDataError};

/// A proxy-wasm status other than `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    InternalFailure,
    Unimplemented,
    Other(u32),
}

impl Status {
    /// From the ABI's numeric status (`0` is `Ok` and is not a `Status`).
    pub fn from_code(code: u32) -> Status {
        match code {
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            other => Status::Other(other),
        }
    }
}

/// A host call that failed: which one, on what, and the host's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// The operation, e.g. `set_property` (also the `op` label of the error metric).
    pub op: &'static str,
    /// What it acted on: a header or property name, a cluster.
    pub what: String,
    pub status: Status,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}` failed: {:?}", self.op, self.what, self.status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    RequestHeaders,
    ResponseHeaders,
    CallResponseHeaders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    RequestBody,
    ResponseBody,
    CallResponseBody,
}

/// Reads a whole buffer: both hosts clamp the length to what the buffer holds.
pub const WHOLE: usize = 0x7fff_ffff;

/// The host calls the driver and [`Host`] need. Only calls every target host implements (see
/// `docs/portability.md`); no queues, gRPC, foreign functions or trailers.
pub trait Abi {
    /// The filter's name, for log lines and metrics.
    fn filter_name(&self) -> &str;
    /// The host kind as detected so far in this VM (`None` before the first request).
    fn host_kind(&self) -> Option<HostKind>;
    fn set_host_kind(&mut self, kind: HostKind);
    fn now_ns(&self) -> u64;
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status>;
    fn headers(&self, map: Map) -> Result<Vec<(String, String)>, Status>;
    /// Replaces (or adds) a header.
    fn set_header(&mut self, map: Map, name: &str, value: &str) -> Result<(), Status>;
    fn remove_header(&mut self, map: Map, name: &str) -> Result<(), Status>;
    /// Up to `max` bytes from `start`; an absent buffer reads as empty.
    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Vec<u8>, Status>;
    /// Replaces `size` bytes at `start` with `data`.
    fn set_buffer(&mut self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> Result<(), Status>;
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status>;
    /// Starts a callout; returns its token.
    fn dispatch(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status>;
    fn resume_request(&mut self) -> Result<(), Status>;
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), Status>;
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status>;
    /// The raw host write: Envoy overwrites when `cas` is `None`; Kong refuses an existing key then.
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    fn counter_add(&mut self, name: &str, delta: u64) -> Result<(), Status>;
    fn histogram_record(&mut self, name: &str, value: u64) -> Result<(), Status>;
    fn gauge_set(&mut self, name: &str, value: u64) -> Result<(), Status>;
    fn log(&self, level: LogLevel, message: &str);
    fn set_tick_period_ms(&mut self, ms: u32) -> Result<(), Status>;
}

/// The CAS token that makes an Envoy shared-data write create-only: Envoy ignores the token of a key
/// that does not exist yet, and versions count up from 1 across the store, so no live key has this one.
const CREATE_ONLY: u32 = u32::MAX;

/// Logs and counts a failed host call; returns the error for the caller.
pub fn report<A: Abi + ?Sized>(abi: &mut A, op: &'static str, what: &str, status: Status) -> HostError {
    let err = HostError {
        op,
        what: what.to_string(),
        status,
    };
    let name = abi.filter_name().replace('-', "_");
    abi.log(LogLevel::Warn, &format!("{}: host call {err}", abi.filter_name()));
    let _counted = abi.counter_add(
        &crate::metrics::name(&format!("{name}_host_errors_total"), &[("op", op)]),
        1,
    );
    err
}

fn log_read_failure<A: Abi + ?Sized>(abi: &A, op: &str, what: &str, status: Status) {
    abi.log(
        LogLevel::Warn,
        &format!(
            "{}: host call {op} `{what}` failed: {status:?}",
            abi.filter_name()
        ),
    );
}

impl<A: Abi> Host for A {
    fn kind(&self) -> HostKind {
        self.host_kind().unwrap_or(HostKind::Envoy)
    }

    fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.header(Map::RequestHeaders, name).unwrap_or_else(|s| {
            log_read_failure(self, "get_header", name, s);
            None
        })
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.headers(Map::RequestHeaders).unwrap_or_else(|s| {
            log_read_failure(self, "get_headers", "request", s);
            Vec::new()
        })
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), super::HostError> {
        let result = match value {
            Some(v) => self.set_header(Map::RequestHeaders, name, v),
            None => self.remove_header(Map::RequestHeaders, name),
        };
        result.map_err(|s| report(self, "set_request_header", name, s))
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.header(Map::ResponseHeaders, name).unwrap_or_else(|s| {
            log_read_failure(self, "get_header", name, s);
            None
        })
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), super::HostError> {
        let result = match value {
            Some(v) => self.set_header(Map::ResponseHeaders, name, v),
            None => self.remove_header(Map::ResponseHeaders, name),
        };
        result.map_err(|s| report(self, "set_response_header", name, s))
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        Abi::property(self, path).unwrap_or_else(|s| {
            log_read_failure(self, "get_property", &path.join("."), s);
            None
        })
    }

    fn set_property(&mut self, path: &[&str], value: &str) -> Result<(), super::HostError> {
        Abi::set_property(self, path, value.as_bytes())
            .map_err(|s| report(self, "set_property", &path.join("."), s))
    }

    fn route_to(&mut self, route: &Route<'_>) -> Result<(), super::HostError> {
        match self.kind() {
            HostKind::Envoy => {
                self.set_request_header(route.header, Some(route.cluster))?;
                self.set_request_header(":authority", Some(authority(route.host)))?;
                self.set_request_header(":path", Some(route.path))
            }
            // Routing is done when filters run on Kong: the upstream is a property. `:authority` is
            // read-only there and `:path` cannot carry a query, so the upstream URI is nginx's.
            HostKind::Kong => {
                Host::set_property(self, &["kong", "service", "target"], route.host)?;
                Host::set_property(self, &["ngx", "upstream_uri"], route.path)
            }
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        Abi::log(self, level, message)
    }

    fn counter_add(&mut self, name: &str, delta: u64) {
        if let Err(s) = Abi::counter_add(self, name, delta) {
            log_read_failure(self, "counter_add", name, s);
        }
    }

    fn histogram_record(&mut self, name: &str, value: u64) {
        if let Err(s) = Abi::histogram_record(self, name, value) {
            log_read_failure(self, "histogram_record", name, s);
        }
    }

    fn gauge_set(&mut self, name: &str, value: u64) {
        if let Err(s) = Abi::gauge_set(self, name, value) {
            log_read_failure(self, "gauge_set", name, s);
        }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared_data(key).unwrap_or_else(|s| {
            log_read_failure(self, "get_shared_data", key, s);
            (None, None)
        })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        // `None` means "create only if absent" on every host. Kong does that itself.
        let cas = match (cas, self.kind()) {
            (None, HostKind::Envoy) => Some(CREATE_ONLY),
            (cas, _) => cas,
        };
        match self.set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(s) => {
                report(self, "set_shared_data", key, s);
                Err(SharedDataError::Failed)
            }
        }
    }
}
