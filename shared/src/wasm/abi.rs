//! [`Abi`] over the raw proxy-wasm ABI (0.2.1), every status returned as data.
//!
//! The SDK's `hostcalls` wrappers panic on any status they do not expect and on a header value that is
//! not UTF-8; a panic kills the VM for every later request on that worker. So the calls are made here
//! directly and their statuses returned. Only `dispatch_http_call` goes through the SDK, because its
//! dispatcher must learn the token to route the answer back to this context (its wrapper returns
//! `BadArgument` and `InternalFailure` as errors, which are the statuses hosts use for a refused call).
//!
//! Memory the host returns is allocated by the SDK's `proxy_on_memory_allocate` (a `Vec` of that
//! size) and is taken back with `Vec::from_raw_parts`, as the SDK does.

// The SDK declares the same imports returning its `Status` enum; ours return the raw code, so an
// unknown status is data instead of an invalid enum value.
#![allow(clashing_extern_declarations)]

use crate::host::abi::{Abi, Buffer, Map, Status};
use crate::host::{HostKind, LogLevel};
use crate::rand::Fnv1a;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ptr::{null, null_mut};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

thread_local! {
    static HOST_KIND: Cell<Option<HostKind>> = const { Cell::new(None) };
    /// Metric ids by name (FNV: a name is hashed on every increment, and SipHash costs more than the rest).
    static METRIC_IDS: RefCell<HashMap<String, u32, BuildHasherDefault<Fnv1a>>> = RefCell::new(HashMap::default());
    static FILTER_NAME: Cell<&'static str> = const { Cell::new("") };
}

/// Records the filter's name for log lines and metrics (once, at registration).
pub fn set_filter_name(name: &'static str) {
    FILTER_NAME.with(|n| n.set(name));
}

fn check(code: u32) -> Result<(), Status> {
    match code {
        0 => Ok(()),
        other => Err(Status::from_code(other)),
    }
}

/// Takes ownership of host-allocated bytes.
///
/// # Safety
/// `data` must be null or a pointer the host obtained from `proxy_on_memory_allocate(size)`.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the SDK's allocator gave the host a `Vec<u8>` of capacity `size` at `data`.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

fn map_code(map: Map) -> u32 {
    match map {
        Map::RequestHeaders => 0,
        Map::ResponseHeaders => 2,
        Map::CallResponseHeaders => 6,
    }
}

fn buffer_code(buffer: Buffer) -> u32 {
    match buffer {
        Buffer::RequestBody => 0,
        Buffer::ResponseBody => 1,
        Buffer::CallResponseBody => 4,
    }
}

fn path_bytes(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// The ABI's header-map encoding: count, then (key length, value length) pairs, then each key and
/// value NUL-terminated.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>());
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(0).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// Decodes a header map; malformed input gives what could be read, values that are not UTF-8 are
/// decoded lossily (never a panic).
pub fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    let Some(count) = u32_at(bytes, 0) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(256));
    let mut p = 4usize.saturating_add(count.saturating_mul(8));
    for n in 0..count {
        let s = 4 + n * 8;
        let (Some(klen), Some(vlen)) = (u32_at(bytes, s), u32_at(bytes, s + 4)) else {
            break;
        };
        let Some(key) = bytes.get(p..p.saturating_add(klen)) else {
            break;
        };
        p = p.saturating_add(klen + 1);
        let Some(value) = bytes.get(p..p.saturating_add(vlen)) else {
            break;
        };
        p = p.saturating_add(vlen + 1);
        out.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    out
}

/// The real host, for the current context.
pub struct ProxyAbi;

impl ProxyAbi {
    fn metric(&mut self, kind: u32, name: &str) -> Result<u32, Status> {
        if let Some(id) = METRIC_IDS.with(|ids| ids.borrow().get(name).copied()) {
            return Ok(id);
        }
        let mut id = 0u32;
        // SAFETY: pointers to live locals and a borrowed str for the duration of the call.
        check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
        METRIC_IDS.with(|ids| ids.borrow_mut().insert(name.to_string(), id));
        Ok(id)
    }
}

impl Abi for ProxyAbi {
    fn filter_name(&self) -> &str {
        FILTER_NAME.with(Cell::get)
    }

    fn host_kind(&self) -> Option<HostKind> {
        HOST_KIND.with(Cell::get)
    }

    fn set_host_kind(&mut self, kind: HostKind) {
        HOST_KIND.with(|k| k.set(Some(kind)));
    }

    fn now_ns(&self) -> u64 {
        let mut t = 0u64;
        // SAFETY: a pointer to a live local.
        match check(unsafe { proxy_get_current_time_nanoseconds(&mut t) }) {
            Ok(()) => t,
            Err(_) => 0,
        }
    }

    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        let mut data = null_mut();
        let mut size = 0usize;
        // SAFETY: pointers to live locals; the host writes a buffer it allocated through the SDK.
        let code = unsafe {
            proxy_get_header_map_value(map_code(map), name.as_ptr(), name.len(), &mut data, &mut size)
        };
        match check(code) {
            // SAFETY: on success the host handed over `data` of `size` bytes (or null).
            Ok(()) => Ok(Some(
                String::from_utf8_lossy(&unsafe { take(data, size) }).into_owned(),
            )),
            Err(Status::NotFound) => Ok(None),
            Err(s) => Err(s),
        }
    }

    fn headers(&self, map: Map) -> Result<Vec<(String, String)>, Status> {
        let mut data = null_mut();
        let mut size = 0usize;
        // SAFETY: as in `header`.
        check(unsafe { proxy_get_header_map_pairs(map_code(map), &mut data, &mut size) })?;
        // SAFETY: on success the host handed over `data` of `size` bytes (or null).
        Ok(deserialize_map(&unsafe { take(data, size) }))
    }

    fn set_header(&mut self, map: Map, name: &str, value: &str) -> Result<(), Status> {
        // SAFETY: borrowed strs for the duration of the call.
        check(unsafe {
            proxy_replace_header_map_value(
                map_code(map),
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn remove_header(&mut self, map: Map, name: &str) -> Result<(), Status> {
        // SAFETY: a borrowed str for the duration of the call.
        match check(unsafe { proxy_remove_header_map_value(map_code(map), name.as_ptr(), name.len()) }) {
            Err(Status::NotFound) => Ok(()),
            other => other,
        }
    }

    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Vec<u8>, Status> {
        let mut data = null_mut();
        let mut size = 0usize;
        // SAFETY: as in `header`.
        match check(unsafe { proxy_get_buffer_bytes(buffer_code(buffer), start, max, &mut data, &mut size) })
        {
            // SAFETY: on success the host handed over `data` of `size` bytes (or null).
            Ok(()) => Ok(unsafe { take(data, size) }),
            Err(Status::NotFound) => Ok(Vec::new()),
            Err(s) => Err(s),
        }
    }

    fn set_buffer(&mut self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
        // SAFETY: a borrowed slice for the duration of the call.
        check(unsafe { proxy_set_buffer_bytes(buffer_code(buffer), start, size, data.as_ptr(), data.len()) })
    }

    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
        let headers = serialize_map(headers);
        // SAFETY: borrowed buffers for the duration of the call.
        check(unsafe {
            proxy_send_local_response(
                status,
                null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        })
    }

    fn dispatch(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status> {
        let timeout = std::time::Duration::from_millis(timeout_ms);
        proxy_wasm::hostcalls::dispatch_http_call(target, headers.to_vec(), Some(body), vec![], timeout)
            .map_err(|s| Status::from_code(s as u32))
    }

    fn resume_request(&mut self) -> Result<(), Status> {
        // SAFETY: no pointers.
        check(unsafe { proxy_continue_stream(0) })
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        let path = path_bytes(path);
        let mut data = null_mut();
        let mut size = 0usize;
        // SAFETY: as in `header`.
        match check(unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) }) {
            // SAFETY: on success the host handed over `data` of `size` bytes (or null).
            Ok(()) if !data.is_null() => Ok(Some(unsafe { take(data, size) })),
            Ok(()) | Err(Status::NotFound) => Ok(None),
            Err(s) => Err(s),
        }
    }

    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        let path = path_bytes(path);
        // SAFETY: borrowed buffers for the duration of the call.
        check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        let mut data = null_mut();
        let mut size = 0usize;
        let mut cas = 0u32;
        // SAFETY: as in `header`.
        match check(unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) })
        {
            Ok(()) => {
                let cas = (cas != 0).then_some(cas);
                if data.is_null() {
                    Ok((None, cas))
                } else {
                    // SAFETY: on success the host handed over `data` of `size` bytes.
                    Ok((Some(unsafe { take(data, size) }), cas))
                }
            }
            Err(Status::NotFound) => Ok((None, None)),
            Err(s) => Err(s),
        }
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        // SAFETY: borrowed buffers for the duration of the call.
        check(unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        })
    }

    fn counter_add(&mut self, name: &str, delta: u64) -> Result<(), Status> {
        let id = self.metric(0, name)?;
        if delta == 0 {
            // Envoy refuses an increment that is not positive (`BadArgument`); the counter is
            // defined now, at 0, which is all an add of 0 means (e.g. a stream that ended before any
            // completion token was counted).
            return Ok(());
        }
        // SAFETY: no pointers.
        check(unsafe { proxy_increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX)) })
    }

    fn histogram_record(&mut self, name: &str, value: u64) -> Result<(), Status> {
        let id = self.metric(2, name)?;
        // SAFETY: no pointers.
        check(unsafe { proxy_record_metric(id, value) })
    }

    fn gauge_set(&mut self, name: &str, value: u64) -> Result<(), Status> {
        let id = self.metric(1, name)?;
        // SAFETY: no pointers.
        check(unsafe { proxy_record_metric(id, value) })
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => 1,
            LogLevel::Info => 2,
            LogLevel::Warn => 3,
            LogLevel::Error => 4,
        };
        // Messages carry what clients sent (models, paths): one line each, whatever they hold.
        let message = crate::text::one_line(message);
        // SAFETY: a borrowed str for the duration of the call. A log line that cannot be written has
        // nowhere else to go.
        let _unlogged = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
    }

    fn set_tick_period_ms(&mut self, ms: u32) -> Result<(), Status> {
        // SAFETY: no pointers.
        check(unsafe { proxy_set_tick_period_milliseconds(ms) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip_and_bad_input_never_panics() {
        let pairs = [(":method", "POST"), ("x-a", "b")];
        let bytes = serialize_map(&pairs);
        let back = deserialize_map(&bytes);
        assert_eq!(
            back,
            vec![
                (":method".to_string(), "POST".to_string()),
                ("x-a".into(), "b".into())
            ]
        );
        for cut in 0..bytes.len() {
            let _ = deserialize_map(bytes.get(..cut).unwrap());
        }
        let mut latin1 = serialize_map(&[("k", "v")]);
        let at = latin1.len() - 2;
        latin1[at] = 0xe9;
        assert_eq!(deserialize_map(&latin1)[0].1, "\u{fffd}");
    }
}
