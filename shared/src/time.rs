//! UTC calendar time from Unix epoch seconds and back, with no clock: the caller passes the time in
//! (from the host's clock), so everything here is a pure function and tests pin any instant.
//!
//! The day arithmetic is Howard Hinnant's `civil_from_days` / `days_from_civil`
//! (<https://howardhinnant.github.io/date_algorithms.html>), exact for the proleptic Gregorian calendar.
//! Only years 1970-9999 are represented: no pre-epoch instant is needed, and the four-digit formats
//! below cannot print a later one.

/// Seconds in a day.
const DAY: u64 = 86_400;
/// 9999-12-31T23:59:59Z, the last instant with a four-digit year.
const MAX_EPOCH: u64 = 253_402_300_799;

/// A UTC instant to the second, years 1970-9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// The instant `secs` seconds after 1970-01-01T00:00:00Z; `None` past the year 9999.
    pub fn from_epoch(secs: u64) -> Option<DateTime> {
        if secs > MAX_EPOCH {
            return None;
        }
        let (year, month, day) = civil_from_days(secs / DAY);
        let rest = secs % DAY;
        Some(DateTime {
            year: u16::try_from(year).ok()?,
            month,
            day,
            hour: (rest / 3600) as u8,
            minute: (rest / 60 % 60) as u8,
            second: (rest % 60) as u8,
        })
    }

    /// Seconds since 1970-01-01T00:00:00Z (instants before 1970 are not represented: `None`).
    pub fn epoch(&self) -> Option<u64> {
        let days = days_from_civil(u64::from(self.year), self.month, self.day)?;
        Some(days * DAY + u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second))
    }

    /// Parses the compact ISO 8601 basic form `YYYYMMDDTHHMMSSZ` (AWS's `x-amz-date`), checking that
    /// every field is in range (February 29 only in leap years, no leap seconds).
    pub fn parse_basic(s: &str) -> Option<DateTime> {
        let b = s.as_bytes();
        if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<u16> {
            let digits = s.get(from..to)?;
            if !digits.bytes().all(|d| d.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let t = DateTime {
            year: num(0, 4)?,
            month: u8::try_from(num(4, 6)?).ok()?,
            day: u8::try_from(num(6, 8)?).ok()?,
            hour: u8::try_from(num(9, 11)?).ok()?,
            minute: u8::try_from(num(11, 13)?).ok()?,
            second: u8::try_from(num(13, 15)?).ok()?,
        };
        let valid = (1..=12).contains(&t.month)
            && t.day >= 1
            && t.day <= days_in_month(t.year, t.month)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60
            && t.year >= 1970;
        valid.then_some(t)
    }

    /// `YYYYMMDD`, the date of an AWS credential scope.
    pub fn basic_date(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `YYYYMMDDTHHMMSSZ`, AWS's `x-amz-date`.
    pub fn basic(&self) -> String {
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.basic_date(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of the day `days` after 1970-01-01. Hinnant's algorithm, restricted to days on
/// or after the epoch so everything stays unsigned.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8; // [1, 12]
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to (year, month, day); `None` before the epoch or for a month out of range.
fn days_from_civil(year: u64, month: u8, day: u8) -> Option<u64> {
    if !(1..=12).contains(&month) {
        return None;
    }
    let y = year.checked_sub(u64::from(month <= 2))?;
    let era = y / 400;
    let yoe = y % 400;
    let m = u64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn known_instants() {
        let cases: [(u64, &str); 9] = [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"), // leap day of a 400-year leap year
            (951_955_199, "20000301T235959Z"),
            (1_440_938_160, "20150830T123600Z"), // the AWS SigV4 test suite's instant
            (1_709_164_800, "20240229T000000Z"),
            (1_735_689_599, "20241231T235959Z"),
            (4_107_542_400, "21000301T000000Z"), // 2100 is not a leap year
            (4_102_444_800, "21000101T000000Z"),
            (MAX_EPOCH, "99991231T235959Z"),
        ];
        for (secs, want) in cases {
            let t = DateTime::from_epoch(secs).unwrap();
            assert_eq!(t.basic(), want, "{secs}");
            assert_eq!(t.basic_date(), want[..8], "{secs}");
            assert_eq!(DateTime::parse_basic(want), Some(t), "{want}");
            assert_eq!(t.epoch(), Some(secs), "{want}");
        }
        assert_eq!(DateTime::from_epoch(MAX_EPOCH + 1), None);
    }

    /// Every day from 1970 to 2200 round-trips, and consecutive days are one calendar day apart.
    #[test]
    fn every_day_round_trips() {
        let mut prev = DateTime::from_epoch(0).unwrap();
        for day in 1..(231 * 366) {
            let t = DateTime::from_epoch(day * DAY + 43_261).unwrap();
            assert_eq!(t.epoch(), Some(day * DAY + 43_261));
            assert_eq!((t.hour, t.minute, t.second), (12, 1, 1));
            let next_day = if prev.day == days_in_month(prev.year, prev.month) {
                1
            } else {
                prev.day + 1
            };
            assert_eq!(t.day, next_day, "{t:?} after {prev:?}");
            prev = t;
        }
        assert_eq!(prev.year, 2201);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015083OT123600Z",
            "20151301T000000Z",
            "20150000T000000Z",
            "20150229T000000Z",
            "21000229T000000Z",
            "20150431T000000Z",
            "20150830T240000Z",
            "20150830T126000Z",
            "20150830T123660Z",
            "19691231T235959Z",
            "+0150830T123600Z",
            "2015-08-30T12:36:00Z",
        ] {
            assert_eq!(DateTime::parse_basic(bad), None, "{bad:?}");
        }
        assert!(DateTime::parse_basic("20240229T000000Z").is_some());
    }
}
