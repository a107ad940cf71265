//! `mock-provider [--port N]`: runs the mock LLM providers (OpenAI, Azure OpenAI, Anthropic; endpoints
//! and `x-mock-*` headers in `e2e::mock`) on 127.0.0.1:N until killed. The port defaults to
//! `$MOCK_PORT`, else 10001; 0 picks a free port.

use std::process::ExitCode;

use e2e::mock::MockServer;

const USAGE: &str = "usage: mock-provider [--port N]   (default $MOCK_PORT or 10001; 0 = any free port)";

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid port {s:?}\n{USAGE}"))
}

fn port_from_args() -> Result<u16, String> {
    let mut port = match std::env::var("MOCK_PORT") {
        Ok(v) if !v.is_empty() => parse_port(&v)?,
        _ => 10001,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--port" || arg == "-p" {
            port = parse_port(
                &args
                    .next()
                    .ok_or_else(|| format!("--port needs a value\n{USAGE}"))?,
            )?;
        } else if let Some(v) = arg.strip_prefix("--port=") {
            port = parse_port(v)?;
        } else if arg == "--help" || arg == "-h" {
            return Err(USAGE.to_string());
        } else {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
    }
    Ok(port)
}

fn main() -> ExitCode {
    let port = match port_from_args() {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let server = match MockServer::start(port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mock-provider: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock-provider listening on http://127.0.0.1:{}", server.port());
    loop {
        std::thread::park();
    }
}
