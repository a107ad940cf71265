//! Starting and watching the bench's Envoys: `render_config`'s output minus the access log (and with a
//! static route for the bare arm), ports discovered as the e2e harness does, killed on drop.

use super::*;

/// A running process that is killed on drop.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Envoy started by the bench.
pub(crate) struct BenchEnvoy {
    pub(crate) port: u16,
    admin_port: u16,
    dir: PathBuf,
    child: Guard,
}

impl BenchEnvoy {
    pub(crate) fn start(s: &Settings, label: &str, opts: &EnvoyOptions, bare: bool) -> Res<BenchEnvoy> {
        let slug: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = s.dir.join(format!("envoy-{slug}-{}", opts.concurrency));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let admin_path = dir.join("admin-address.txt");
        let config = bench_config(opts, &admin_path, bare)?;
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = File::create(dir.join("envoy.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(e2e::envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(opts.concurrency.to_string())
            .args(["-l", "warning", "--component-log-level"])
            .arg(format!("wasm:{}", s.wasm_log))
            .arg("--admin-address-path")
            .arg(&admin_path)
            .current_dir(&s.root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", e2e::envoy_bin().display()))?;
        let mut envoy = BenchEnvoy {
            port: 0,
            admin_port: 0,
            dir,
            child: Guard(child),
        };
        envoy.wait_ready().map_err(|e| {
            format!(
                "envoy did not start: {e}\n    log ({}):\n{}",
                envoy.dir.join("envoy.log").display(),
                log_tail(&envoy.dir.join("envoy.log"), 12)
            )
        })?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no admin address yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Err(format!("envoy exited with {status}"));
            }
            match self.poll_ready() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready after 30 s ({last})"))
    }

    fn poll_ready(&mut self) -> Res<bool> {
        if self.admin_port == 0 {
            let text = fs::read_to_string(self.dir.join("admin-address.txt"))
                .map_err(|_| "no admin address yet".to_string())?;
            self.admin_port = text
                .trim()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .ok_or_else(|| format!("admin address file holds {text:?}"))?;
        }
        if self.port == 0 {
            let resp = e2e::http::request(self.admin_port, "GET", "/listeners?format=json", &[], b"")
                .map_err(|e| format!("GET /listeners: {e}"))?;
            let json = resp.try_json().map_err(|e| format!("GET /listeners: {e}"))?;
            self.port = json
                .pointer("/listener_statuses/0/local_address/socket_address/port_value")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| "listener port not known yet".to_string())?;
        }
        let resp = e2e::http::request(self.admin_port, "GET", "/ready", &[], b"")
            .map_err(|e| format!("GET /ready: {e}"))?;
        Ok(resp.status == 200)
    }

    /// Resident memory of the Envoy process (kB from /proc).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        vm_rss_kib(self.child.0.id())
    }

    /// Server memory gauges from the admin `/stats` (`server.memory_allocated`, ...).
    pub(crate) fn memory_stats(&self) -> BTreeMap<String, u64> {
        let Ok(resp) = e2e::http::request(self.admin_port, "GET", "/stats?filter=^server\\.memory", &[], b"")
        else {
            return BTreeMap::new();
        };
        resp.text()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }
}

/// The last `n` lines of a log file, indented for an error message.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `VmRSS` of one process (kB, from /proc).
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The harness's config for `opts` without the access log, and for the bare arm with a static route.
pub(crate) fn bench_config(opts: &EnvoyOptions, admin_path: &Path, bare: bool) -> Res<String> {
    let y = render_config(opts, admin_path);
    let (start, end) = match (
        y.find("          access_log:\n"),
        y.find("          route_config:\n"),
    ) {
        (Some(s), Some(e)) if s < e => (s, e),
        _ => return Err("render_config changed shape: no access_log before route_config".into()),
    };
    let mut y = format!("{}{}", &y[..start], &y[end..]);
    if bare {
        let dynamic = "route: { cluster_header: x-ai-cluster,";
        if !y.contains(dynamic) {
            return Err("render_config changed shape: no cluster_header route".into());
        }
        y = y.replace(dynamic, "route: { cluster: mock_openai,");
    }
    Ok(y)
}
