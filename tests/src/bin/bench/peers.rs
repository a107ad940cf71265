//! `bench --peers` (`make bench-peers`): the policies against other gateways, in one run.
//!
//! Arms: ai-proxy alone and the bundle chain (the policies of `bench/arms.json` with their configs, in
//! the `ai-gateway` module), LiteLLM's proxy and Portkey's gateway, each between two runs of bare
//! Envoy as in `make bench` (`measure`): the same upstream (`bench-upstream`, with
//! `--stream-from-body` since the peers do not forward `x-bench-stream`; every arm, bare Envoy
//! included, talks to that one process), the same workloads and wrk load, one worker each (Envoy
//! `--concurrency 1`, LiteLLM `--num_workers 1`, Portkey one node process). Then the resident memory
//! of each server after the load. A peer that is not installed or does not answer is skipped with the
//! reason.
//!
//! The peers are installed, pinned, by `make bench-peers` under `bench/peers/` (git-ignored):
//! `BENCH_LITELLM` (default `bench/peers/.venv/bin/litellm`), `BENCH_PORTKEY` (default
//! `bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js`, run with `NODE`, default
//! `node`). Both run offline: LiteLLM with `LITELLM_LOCAL_MODEL_COST_MAP=True` (its bundled model cost
//! map, not a download at start) and a config that sends `gpt-4o-mini` to the upstream, with a master
//! key (it refuses to start without one: the clients send it as their key); Portkey with
//! `x-portkey-provider: openai` and `x-portkey-custom-host` naming the upstream (127.0.0.1 is one of
//! its default trusted custom hosts). Neither logs each request: LiteLLM runs with `LITELLM_LOG=ERROR`
//! (which also silences uvicorn's access log), Portkey `--headless` (no log console), as the Envoy
//! arms run without an access log.

use super::*;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::launch::{log_tail, vm_rss_kib};

/// A peer gateway the bench started (killed on drop).
pub(crate) struct Peer {
    pub(crate) port: u16,
    /// The headers every request to it carries (its routing to the upstream).
    pub(crate) headers: Vec<(String, String)>,
    child: Guard,
}

impl Peer {
    /// The process and its descendants, since a launcher may fork its server.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        tree_rss_kib(self.child.0.id())
    }
}

/// The parent of each process, from `/proc/*/stat` (the field after the command's closing paren).
fn parents() -> BTreeMap<u32, u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// `VmRSS` of a process and all its descendants (kB).
fn tree_rss_kib(root: u32) -> Option<u64> {
    let parents = parents();
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&pid) = tree.get(i) {
        tree.extend(parents.iter().filter(|(_, pp)| **pp == pid).map(|(p, _)| *p));
        i += 1;
    }
    let own = vm_rss_kib(root)?;
    Some(own + tree.iter().skip(1).filter_map(|p| vm_rss_kib(*p)).sum::<u64>())
}

fn free_port() -> Res<u16> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A peer being started: its process, port, routing headers, readiness path and log.
struct Starting {
    name: &'static str,
    port: u16,
    headers: Vec<(String, String)>,
    ready_path: &'static str,
    log: PathBuf,
    child: Guard,
}

impl Starting {
    /// Waits until `GET ready_path` answers 200 (LiteLLM imports for many seconds on a busy machine).
    fn wait(mut self, timeout: Duration) -> Res<Peer> {
        let deadline = Instant::now() + timeout;
        let mut last = "no answer yet".to_string();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                last = format!("exited with {status}");
                break;
            }
            match e2e::http::request(self.port, "GET", self.ready_path, &[], b"") {
                Ok(r) if r.status == 200 => {
                    return Ok(Peer {
                        port: self.port,
                        headers: self.headers,
                        child: self.child,
                    })
                }
                Ok(r) => last = format!("GET {} answered {}", self.ready_path, r.status),
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "{} did not start ({last})\n    log ({}):\n{}",
            self.name,
            self.log.display(),
            log_tail(&self.log, 12)
        ))
    }
}

fn spawn(
    s: &Settings,
    name: &'static str,
    mut cmd: Command,
    port: u16,
    headers: Vec<(String, String)>,
    ready_path: &'static str,
) -> Res<Starting> {
    let log = s.dir.join(format!("{name}.log"));
    let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        // Every connection stays on 127.0.0.1, whatever proxy the environment names.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .current_dir(&s.root)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    Ok(Starting {
        name,
        port,
        headers,
        ready_path,
        log,
        child: Guard(child),
    })
}

/// A peer's program and the version it reports, or why it cannot run.
struct PeerInstall {
    program: PathBuf,
    version: String,
}

fn litellm_install(root: &Path) -> Res<PeerInstall> {
    let program = root.join(env_or("BENCH_LITELLM", "bench/peers/.venv/bin/litellm"));
    if !program.exists() {
        return Err(format!(
            "{} missing: `make bench-peers` installs it",
            program.display()
        ));
    }
    // The installed distribution's name holds its version (`litellm-1.2.3.dist-info`), without the
    // seconds an import of litellm takes.
    let venv = program.parent().and_then(Path::parent).unwrap_or(root);
    let version = fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|py| fs::read_dir(py.path().join("site-packages")).ok())
        .flatten()
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let v = name.strip_prefix("litellm-")?.strip_suffix(".dist-info")?;
            v.starts_with(|c: char| c.is_ascii_digit()).then(|| v.to_string())
        })
        .unwrap_or_else(|| "(version unknown)".into());
    Ok(PeerInstall { program, version })
}

fn portkey_install(root: &Path) -> Res<PeerInstall> {
    let program = root.join(env_or(
        "BENCH_PORTKEY",
        "bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js",
    ));
    if !program.exists() {
        return Err(format!(
            "{} missing: `make bench-peers` installs it",
            program.display()
        ));
    }
    let manifest = program
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("package.json"));
    let version = manifest
        .and_then(|m| fs::read_to_string(m).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "(version unknown)".into());
    Ok(PeerInstall { program, version })
}

/// LiteLLM refuses to start without a master key (or with a publicly known one): the clients' key.
const LITELLM_KEY: &str = "sk-bench-peers-5b0c1e7d";

fn start_litellm(s: &Settings, install: &PeerInstall, upstream: u16) -> Res<Starting> {
    let port = free_port()?;
    // The model the bench asks for, served by the upstream as an OpenAI API.
    let config = format!(
        "model_list:\n  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
         api_base: http://127.0.0.1:{upstream}/v1\n      api_key: bench-upstream-key\n\
         general_settings:\n  master_key: {LITELLM_KEY}\n",
        model = workload::MODEL
    );
    let path = s.dir.join("litellm.yaml");
    fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cmd = Command::new(&install.program);
    cmd.arg("--config")
        .arg(&path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR");
    let headers = vec![("Authorization".to_string(), format!("Bearer {LITELLM_KEY}"))];
    spawn(s, "litellm", cmd, port, headers, "/health/liveliness")
}

fn start_portkey(s: &Settings, install: &PeerInstall, upstream: u16) -> Res<Starting> {
    let port = free_port()?;
    let mut cmd = Command::new(env_or("NODE", "node"));
    cmd.arg(&install.program)
        .arg(format!("--port={port}"))
        .arg("--headless");
    let headers = vec![
        ("x-portkey-provider".to_string(), "openai".to_string()),
        (
            "x-portkey-custom-host".to_string(),
            format!("http://127.0.0.1:{upstream}/v1"),
        ),
    ];
    spawn(s, "portkey", cmd, port, headers, "/")
}

/// One process's memory after the load.
pub(crate) struct PeersMemory {
    pub(crate) label: String,
    pub(crate) rss: Option<u64>,
}

/// Everything the peers' report shows.
pub(crate) struct PeersReport {
    pub(crate) date: String,
    /// `name: value` lines about the machine and the software measured.
    pub(crate) machine: Vec<(String, String)>,
    pub(crate) load_start: String,
    pub(crate) load_end: String,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) labels: Vec<String>,
    pub(crate) cells: Cells,
    pub(crate) measured_secs: u64,
    /// Bare Envoy first, then each arm.
    pub(crate) memory: Vec<PeersMemory>,
    pub(crate) notes: Vec<String>,
}

fn loadavg() -> String {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The first line of `/proc/cpuinfo` or `/proc/meminfo` that starts with `key`, its value.
fn proc_field(file: &str, key: &str) -> String {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn os_name() -> String {
    fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

pub(crate) fn run(s: &Settings) -> Res<PeersReport> {
    let wrk_version = command_line(&s.wrk, &["--version"]);
    if !wrk_version.starts_with("wrk") {
        return Err(format!(
            "{} not found: `make bench-peers` installs it (apt-get install wrk)",
            s.wrk
        ));
    }
    let load_start = loadavg();
    let arms_file = read_arms(&s.root, &s.root.join(env_or("BENCH_ARMS", "bench/arms.json")))?;
    let workloads = make_workloads(s)?;
    let (_upstream, upstream) = start_upstream(true)?;
    eprintln!("bench: upstream on 127.0.0.1:{upstream} (stream from body); {wrk_version}");
    let mut notes = Vec::new();
    let mut skip = |what: &str, why: String| {
        let note = format!("skipped {what}: {why}");
        eprintln!("bench: {note}");
        notes.push(note.lines().next().unwrap_or_default().to_string());
    };

    // The peers start first: they take the longest, and start while the Envoys do.
    let litellm = litellm_install(&s.root);
    let portkey = portkey_install(&s.root);
    let mut starting = Vec::new();
    let started = [
        (
            "LiteLLM proxy",
            &litellm,
            litellm
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|i| start_litellm(s, i, upstream)),
        ),
        (
            "Portkey gateway",
            &portkey,
            portkey
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|i| start_portkey(s, i, upstream)),
        ),
    ];
    for (label, install, st) in started {
        let version = install.as_ref().map(|i| i.version.as_str()).unwrap_or_default();
        match st {
            Ok(st) => starting.push((format!("{label} {version}"), st)),
            Err(why) => skip(label, why),
        }
    }

    let ctx = Ctx {
        upstream,
        env: arms_file.env.clone(),
        workloads,
    };
    let bare = start_bare(s, &ctx)?;
    let mut arms = Vec::new();
    let proxy: Vec<BenchFilter> = arms_file
        .filters
        .iter()
        .filter(|f| f.name == "ai-proxy")
        .cloned()
        .collect();
    let names: Vec<&str> = arms_file.filters.iter().map(|f| f.name.as_str()).collect();
    let bundle_label = format!("bundle: {}", names.join(" → "));
    let envoy_arms = [
        ("ai-proxy".to_string(), &proxy, Packing::Separate),
        (bundle_label, &arms_file.filters, Packing::Bundle),
    ];
    for (label, filters, packing) in envoy_arms {
        let stem = match packing {
            Packing::Separate => filters.first().cloned(),
            Packing::Bundle => Some(bundle_module()),
        };
        let ready = match stem {
            None => Err("no such filter in the arms file".to_string()),
            Some(f) => wasm_state(&f).map(|_| ()),
        };
        match ready.and_then(|()| start_arm(s, &label, filters, packing, &ctx)) {
            Ok(arm) => arms.push(arm),
            Err(why) => skip(&format!("`{label}`"), why),
        }
    }
    for (label, st) in starting {
        let name = st.name;
        let peer = st
            .wait(Duration::from_secs(180))
            .and_then(|p| preflight(p.port, &p.headers, &ctx.workloads).map(|()| p));
        match peer {
            Ok(p) => arms.push(Arm {
                label,
                filters: Vec::new(),
                packing: Packing::Separate,
                server: Server::Peer(p),
            }),
            Err(why) => skip(name, why),
        }
    }

    warm_up(s, &bare, &arms, &ctx.workloads)?;
    let started = Instant::now();
    let cells = measure(s, &bare, &arms, &ctx.workloads)?;
    let measured_secs = started.elapsed().as_secs();
    let mut memory = vec![PeersMemory {
        label: "bare Envoy".into(),
        rss: bare.rss_kib().map(|k| k * 1024),
    }];
    memory.extend(arms.iter().map(|a| PeersMemory {
        label: a.label.clone(),
        rss: a.server.rss_kib().map(|k| k * 1024),
    }));
    let load_end = loadavg();

    let envoy_version = command_line(&e2e::envoy_bin().to_string_lossy(), &["--version"]);
    let node = env_or("NODE", "node");
    let python = litellm
        .as_ref()
        .ok()
        .and_then(|i| i.program.parent().map(|d| d.join("python")))
        .map(|p| command_line(&p.to_string_lossy(), &["--version"]))
        .unwrap_or_default();
    let version = |i: &Res<PeerInstall>| match i {
        Ok(i) => i.version.clone(),
        Err(_) => "not installed".into(),
    };
    let machine = vec![
        ("CPU".into(), proc_field("/proc/cpuinfo", "model name")),
        (
            "cores".into(),
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
                .to_string(),
        ),
        (
            "memory".into(),
            // `MemTotal:  24684084 kB`
            proc_field("/proc/meminfo", "MemTotal")
                .trim_end_matches(" kB")
                .parse::<f64>()
                .map_or_else(
                    |_| "unknown".into(),
                    |kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)),
                ),
        ),
        (
            "system".into(),
            format!("{}, {}", os_name(), command_line("uname", &["-sr"])),
        ),
        (
            "Envoy".into(),
            envoy_version.split(": ").last().unwrap_or_default().to_string(),
        ),
        ("load".into(), wrk_version),
        ("LiteLLM".into(), format!("{} ({python})", version(&litellm))),
        (
            "Portkey gateway".into(),
            format!(
                "{} (node {})",
                version(&portkey),
                command_line(&node, &["--version"])
            ),
        ),
    ];
    Ok(PeersReport {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine,
        load_start,
        load_end,
        workloads: ctx.workloads,
        labels: arms.iter().map(|a| a.label.clone()).collect(),
        cells,
        measured_secs,
        memory,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children() {
        let me = std::process::id();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let parent = parents().get(&child.id()).copied();
        let own = vm_rss_kib(me).unwrap();
        let kid = vm_rss_kib(child.id()).unwrap();
        let tree = tree_rss_kib(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(parent, Some(me));
        assert!(kid > 0);
        // Our own RSS may move a little between the reads: the child's must be in the sum.
        assert!(
            tree >= own + kid - own / 20,
            "tree {tree} kB, own {own} kB, child {kid} kB"
        );
        assert_eq!(tree_rss_kib(u32::MAX), None);
    }
}
