//! `canary-report --from <clickhouse-url> --a <target> --b <target> [--table T] [--since S]
//! [--alpha A] [--min-samples N] [--json]`: compares two arms of a canary split from ai-audit-log's
//! records in ClickHouse (error rate, latency p50/p95, tokens and cost per request, guard blocks, each
//! with a significance test) and recommends promote, keep or roll back (`e2e::canary`, `docs/canary.md`).
//!
//! `--from` is ClickHouse's HTTP interface, `http://[user[:password]@]host[:port]` (port 8123 by
//! default). Exit status 0 when a report was printed, whatever the verdict; 2 on bad arguments; 1 when
//! ClickHouse could not be read.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use e2e::canary::{compare, records_query, since_condition, Options, Sample};
use e2e::clickhouse::parse_json_each_row;
use e2e::http::{content_length, is_chunked, read_body, read_head};
use serde_json::Value;
use shared::sink::{clickhouse_table, Format};

const USAGE: &str =
    "usage: canary-report --from http://[user[:password]@]host[:port] --a <target> --b <target> \
[--table ai_audit] [--since 24h|2026-12-01T00:00:00Z] [--alpha 0.05] [--min-samples 30] [--json]";

/// The default audit table (ai-audit-log's ClickHouse sink).
const DEFAULT_TABLE: &str = "ai_audit";

struct Args {
    from: Endpoint,
    table: String,
    a: String,
    b: String,
    since: Option<String>,
    opts: Options,
    json: bool,
}

/// Where ClickHouse answers.
struct Endpoint {
    host: String,
    port: u16,
    user: Option<(String, String)>,
}

fn parse_url(url: &str) -> Result<Endpoint, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("--from {url:?}: expected http://host[:port] (ClickHouse's HTTP interface)")
    })?;
    let authority = rest.split('/').next().unwrap_or("");
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            let (name, pass) = u.split_once(':').unwrap_or((u, ""));
            (Some((name.to_string(), pass.to_string())), h)
        }
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("--from {url:?}: bad port {p:?}"))?,
        ),
        None => (hostport, 8123),
    };
    if host.is_empty() {
        return Err(format!("--from {url:?}: no host"));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
        user,
    })
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut from, mut a, mut b, mut since) = (None, None, None, None);
    let mut table = DEFAULT_TABLE.to_string();
    let mut opts = Options::default();
    let mut json = false;
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--from" => from = Some(parse_url(&value()?)?),
            "--table" => table = value()?,
            "--a" => a = Some(value()?),
            "--b" => b = Some(value()?),
            "--since" => since = Some(value()?),
            "--alpha" => {
                let v = value()?;
                opts.alpha = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0 && *x < 1.0)
                    .ok_or_else(|| format!("--alpha {v:?}: expected a number between 0 and 1"))?;
            }
            "--min-samples" => {
                let v = value()?;
                opts.min_samples = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 2)
                    .ok_or_else(|| format!("--min-samples {v:?}: expected 2 or more"))?;
            }
            "--json" => json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Format::Clickhouse { table: table.clone() }
        .validate()
        .map_err(|e| format!("--table {table:?}: {}", e.message))?;
    Ok(Args {
        from: from.ok_or("--from is required")?,
        table,
        a: a.ok_or("--a is required")?,
        b: b.ok_or("--b is required")?,
        since,
        opts,
        json,
    })
}

/// Runs `sql` on ClickHouse (`POST /`), returns the answer's text.
fn query(at: &Endpoint, sql: &str) -> Result<String, String> {
    let addr = format!("{}:{}", at.host, at.port);
    let mut stream =
        TcpStream::connect(&addr).map_err(|e| format!("cannot reach ClickHouse at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n",
        sql.len()
    );
    if let Some((user, password)) = &at.user {
        head.push_str(&format!(
            "x-clickhouse-user: {user}\r\nx-clickhouse-key: {password}\r\n"
        ));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(sql.as_bytes()))
        .map_err(|e| format!("sending the query to {addr}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let read_err = |e: std::io::Error| format!("reading ClickHouse's answer: {e}");
    let head = read_head(&mut reader)
        .map_err(read_err)?
        .ok_or("ClickHouse closed without an answer")?;
    let status: u16 = head
        .start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if is_chunked(&head.headers) || content_length(&head.headers).map_err(read_err)?.is_some() {
        read_body(&mut reader, &head.headers).map_err(read_err)?
    } else {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map_err(read_err)?;
        all
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    if status == 200 {
        Ok(text)
    } else {
        Err(format!("ClickHouse answered {status}: {}", text.trim()))
    }
}

fn run(args: &Args) -> Result<String, String> {
    let since = args.since.as_deref().map(since_condition).transpose()?;
    let sql = records_query(&clickhouse_table(&args.table), &args.a, &args.b, since.as_deref());
    let rows = parse_json_each_row(&query(&args.from, &sql)?).map_err(|e| e.to_string())?;
    let arm = |name: &str| -> Vec<Sample> {
        rows.iter()
            .filter(|r| r.get("target").and_then(Value::as_str) == Some(name))
            .map(Sample::from_record)
            .collect()
    };
    let report = compare(&args.a, &arm(&args.a), &args.b, &arm(&args.b), args.opts);
    Ok(if args.json {
        format!("{}\n", report.to_json())
    } else {
        report.render()
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("canary-report: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("canary-report: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host, port and credentials, or the error's text.
    type Want = Result<(&'static str, u16, Option<(&'static str, &'static str)>), &'static str>;

    #[test]
    fn urls() {
        let cases: &[(&str, Want)] = &[
            ("http://127.0.0.1:8124", Ok(("127.0.0.1", 8124, None))),
            ("http://ch.internal", Ok(("ch.internal", 8123, None))),
            ("http://ch:9000/", Ok(("ch", 9000, None))),
            (
                "http://reader:s3cret@ch:8123",
                Ok(("ch", 8123, Some(("reader", "s3cret")))),
            ),
            ("http://reader@ch", Ok(("ch", 8123, Some(("reader", ""))))),
            ("https://ch:8443", Err("expected http://")),
            ("http://ch:port", Err("bad port")),
            ("http://:8123", Err("no host")),
        ];
        for (url, want) in cases {
            match (parse_url(url), want) {
                (Ok(e), Ok((host, port, user))) => {
                    assert_eq!((e.host.as_str(), e.port), (*host, *port), "{url}");
                    assert_eq!(
                        e.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                        *user,
                        "{url}"
                    );
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{url}: {got}"),
                (got, want) => panic!("{url}: got {:?}, want {want:?}", got.map(|e| e.host)),
            }
        }
    }

    #[test]
    fn arguments() {
        let args = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let a =
            args("--from http://h:1 --a x --b y --since 6h --alpha 0.01 --min-samples 50 --json").unwrap();
        assert_eq!(
            (a.a.as_str(), a.b.as_str(), a.table.as_str()),
            ("x", "y", DEFAULT_TABLE)
        );
        assert_eq!(
            (a.opts.alpha, a.opts.min_samples, a.json, a.since.as_deref()),
            (0.01, 50, true, Some("6h"))
        );
        for (bad, why) in [
            ("--a x --b y", "--from is required"),
            ("--from http://h --b y", "--a is required"),
            ("--from http://h --a x --b y --table a.b.c", "--table"),
            ("--from http://h --a x --b y --alpha 2", "--alpha"),
            ("--from http://h --a x --b y --min-samples 1", "--min-samples"),
            ("--from http://h --a x --b", "--b needs a value"),
            ("--from http://h --a x --b y --what", "unknown argument"),
        ] {
            let err = args(bad).err().unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
