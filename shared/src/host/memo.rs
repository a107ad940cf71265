//! One callback's header reads and clock, remembered: every read is a crossing out of the VM (and a
//! header value a second one, into the VM's allocator), and the driver and its policy ask for the
//! same ones (`:method` and `:path` twice per filter, the clock five or six times).
//!
//! The driver wraps the host in a [`Memo`] at the start of each callback and drops it at the end.
//! Nothing else runs inside one callback, so a header can only change through this wrapper: a write
//! or removal forgets that header, and resuming the request or sending a reply (inside which Envoy may
//! run the filters after ours) forgets them all. The next callback starts with nothing remembered, because other
//! filters run in between. Whole-map reads (`headers`) and everything else go straight through.

use super::abi::{Abi, Buffer, Map, Status};
use super::{HostKind, LogLevel};
use std::cell::{Cell, RefCell};

pub struct Memo<'a, A: Abi + ?Sized> {
    abi: &'a mut A,
    headers: RefCell<Vec<(Map, String, Option<String>)>>,
    now_ns: Cell<Option<u64>>,
}

impl<'a, A: Abi + ?Sized> Memo<'a, A> {
    pub fn new(abi: &'a mut A) -> Self {
        Memo {
            abi,
            headers: RefCell::new(Vec::new()),
            now_ns: Cell::new(None),
        }
    }

    fn forget(&self, map: Map, name: &str) {
        self.headers
            .borrow_mut()
            .retain(|(m, n, _)| !(*m == map && n.eq_ignore_ascii_case(name)));
    }
}

impl<A: Abi + ?Sized> Abi for Memo<'_, A> {
    fn filter_name(&self) -> &str {
        self.abi.filter_name()
    }
    fn host_kind(&self) -> Option<HostKind> {
        self.abi.host_kind()
    }
    fn set_host_kind(&mut self, kind: HostKind) {
        self.abi.set_host_kind(kind)
    }
    fn now_ns(&self) -> u64 {
        if let Some(t) = self.now_ns.get() {
            return t;
        }
        let t = self.abi.now_ns();
        self.now_ns.set(Some(t));
        t
    }
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        let known = self
            .headers
            .borrow()
            .iter()
            .find(|(m, n, _)| *m == map && n.eq_ignore_ascii_case(name))
            .map(|(_, _, v)| v.clone());
        if let Some(value) = known {
            return Ok(value);
        }
        // A failed read is not remembered: the caller logs it, and the next one asks again.
        let value = self.abi.header(map, name)?;
        self.headers
            .borrow_mut()
            .push((map, name.to_string(), value.clone()));
        Ok(value)
    }
    fn headers(&self, map: Map) -> Result<Vec<(String, String)>, Status> {
        self.abi.headers(map)
    }
    fn set_header(&mut self, map: Map, name: &str, value: &str) -> Result<(), Status> {
        self.forget(map, name);
        self.abi.set_header(map, name, value)
    }
    fn remove_header(&mut self, map: Map, name: &str) -> Result<(), Status> {
        self.forget(map, name);
        self.abi.remove_header(map, name)
    }
    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Vec<u8>, Status> {
        self.abi.buffer(buffer, start, max)
    }
    fn set_buffer(&mut self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
        self.abi.set_buffer(buffer, start, size, data)
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
        self.headers.borrow_mut().clear();
        self.abi.send_response(status, headers, body)
    }
    fn dispatch(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status> {
        self.abi.dispatch(target, headers, body, timeout_ms)
    }
    fn resume_request(&mut self) -> Result<(), Status> {
        // Envoy may run the rest of the chain inside this call (continueDecoding): what the filters
        // after ours write must be read again.
        self.headers.borrow_mut().clear();
        self.abi.resume_request()
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.abi.property(path)
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        self.abi.set_property(path, value)
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        self.abi.shared_data(key)
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.abi.set_shared_data(key, value, cas)
    }
    fn counter_add(&mut self, name: &str, delta: u64) -> Result<(), Status> {
        self.abi.counter_add(name, delta)
    }
    fn histogram_record(&mut self, name: &str, value: u64) -> Result<(), Status> {
        self.abi.histogram_record(name, value)
    }
    fn gauge_set(&mut self, name: &str, value: u64) -> Result<(), Status> {
        self.abi.gauge_set(name, value)
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.abi.log(level, message)
    }
    fn set_tick_period_ms(&mut self, ms: u32) -> Result<(), Status> {
        self.abi.set_tick_period_ms(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    fn calls(host: &FakeHost, op: &str) -> u64 {
        host.calls.borrow().get(op).copied().unwrap_or(0)
    }

    #[test]
    fn a_header_is_read_from_the_host_once_per_callback() {
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[(":path", "/v1/chat")]);
        host.count_calls = true;
        {
            let memo = Memo::new(&mut host);
            for _ in 0..3 {
                assert_eq!(
                    memo.header(Map::RequestHeaders, ":path"),
                    Ok(Some("/v1/chat".into()))
                );
            }
            // An absent header is remembered as absent.
            assert_eq!(memo.header(Map::RequestHeaders, "x-absent"), Ok(None));
            assert_eq!(memo.header(Map::RequestHeaders, "X-Absent"), Ok(None));
            // The same name in another map is another header.
            assert_eq!(memo.header(Map::ResponseHeaders, ":path"), Ok(None));
        }
        assert_eq!(calls(&host, "get_header request :path"), 1);
        assert_eq!(calls(&host, "get_header request x-absent"), 1);
        assert_eq!(calls(&host, "get_header response :path"), 1);
        // The next callback asks the host again: other filters may have changed it in between.
        let memo = Memo::new(&mut host);
        assert_eq!(
            memo.header(Map::RequestHeaders, ":path"),
            Ok(Some("/v1/chat".into()))
        );
        drop(memo);
        assert_eq!(calls(&host, "get_header request :path"), 2);
    }

    #[test]
    fn a_write_or_removal_forgets_the_header() {
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[(":path", "/a"), ("x-k", "1")]);
        host.count_calls = true;
        let mut memo = Memo::new(&mut host);
        assert_eq!(memo.header(Map::RequestHeaders, ":path"), Ok(Some("/a".into())));
        assert_eq!(memo.header(Map::RequestHeaders, "x-k"), Ok(Some("1".into())));
        memo.set_header(Map::RequestHeaders, ":PATH", "/b").unwrap();
        assert_eq!(memo.header(Map::RequestHeaders, ":path"), Ok(Some("/b".into())));
        memo.remove_header(Map::RequestHeaders, "x-k").unwrap();
        assert_eq!(memo.header(Map::RequestHeaders, "x-k"), Ok(None));
        // A write to the response map leaves the request's header remembered.
        memo.set_header(Map::ResponseHeaders, ":path", "/c").unwrap();
        assert_eq!(memo.header(Map::RequestHeaders, ":path"), Ok(Some("/b".into())));
        drop(memo);
        assert_eq!(calls(&host, "get_header request :path"), 2);
    }

    #[test]
    fn resuming_the_request_forgets_every_header() {
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[(":path", "/a")]);
        let mut memo = Memo::new(&mut host);
        assert_eq!(memo.header(Map::RequestHeaders, ":path"), Ok(Some("/a".into())));
        memo.resume_request().unwrap();
        // A later filter, run inside the resume, rewrote it.
        memo.abi.request_headers.insert(":path".into(), "/b".into());
        assert_eq!(memo.header(Map::RequestHeaders, ":path"), Ok(Some("/b".into())));
    }

    #[test]
    fn the_clock_is_read_once_per_callback() {
        let mut host = FakeHost::new(HostKind::Envoy);
        host.count_calls = true;
        {
            let memo = Memo::new(&mut host);
            assert_eq!(memo.now_ns(), memo.now_ns());
        }
        assert_eq!(calls(&host, "now"), 1);
        host.now_ms += 5;
        let memo = Memo::new(&mut host);
        assert_eq!(memo.now_ns(), 1_700_000_000_005_000_000);
    }
}
