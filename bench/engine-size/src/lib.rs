//! One pattern compiled from the input and matched: enough to link an engine's compiler and searches.

#[cfg(feature = "regex-lite")]
use regex_lite::Regex;
#[cfg(all(feature = "regex", not(feature = "regex-lite")))]
use regex::Regex;

/// # Safety
/// `p`/`h` point to `pl`/`hl` readable bytes (the host's side of the call).
#[no_mangle]
pub unsafe extern "C" fn run(p: *const u8, pl: usize, h: *const u8, hl: usize) -> usize {
    let p = unsafe { std::slice::from_raw_parts(p, pl) };
    let h = unsafe { std::slice::from_raw_parts(h, hl) };
    let (Ok(p), Ok(h)) = (std::str::from_utf8(p), std::str::from_utf8(h)) else {
        return 0;
    };
    matches(p, h)
}

#[cfg(any(feature = "regex", feature = "regex-lite"))]
fn matches(p: &str, h: &str) -> usize {
    match Regex::new(p) {
        Ok(re) => re.find_iter(h).map(|m| m.end()).sum::<usize>() + re.captures(h).map_or(0, |c| c.len()),
        Err(_) => 0,
    }
}

#[cfg(not(any(feature = "regex", feature = "regex-lite")))]
fn matches(p: &str, h: &str) -> usize {
    h.matches(p).count()
}
