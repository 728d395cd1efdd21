//! Results: a metric list printed as a table on stdout and optionally
//! written as JSON, plus the once-per-second progress ticker.

use serde::Serialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: Target,
    pub params: Map<String, Value>,
    /// Kept in insertion order for the table; JSON gets an object.
    #[serde(serialize_with = "as_object")]
    pub metrics: Vec<(String, Value)>,
}

#[derive(Serialize)]
pub struct Target {
    pub proto: String,
    pub addr: String,
}

fn as_object<S: serde::Serializer>(m: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
    let map: Map<String, Value> = m.iter().cloned().collect();
    map.serialize(s)
}

impl Report {
    pub fn metric(&mut self, name: &str, v: impl Into<Value>) {
        self.metrics.push((name.to_string(), v.into()));
    }

    /// Rounded rate so tables and JSON stay readable.
    pub fn rate(&mut self, name: &str, count: u64, secs: f64) {
        let r = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        self.metric(name, (r * 10.0).round() / 10.0);
    }

    pub fn latency(&mut self, h: &hdrhistogram::Histogram<u64>) {
        self.metric("latency_samples", h.len());
        if h.is_empty() {
            return;
        }
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            self.metric(&format!("latency_{name}_us"), h.value_at_quantile(q));
        }
        self.metric("latency_max_us", h.max());
        self.metric("latency_mean_us", (h.mean() * 10.0).round() / 10.0);
    }

    pub fn print_table(&self) {
        println!(
            "scenario {} against {} at {}",
            self.scenario, self.target.proto, self.target.addr
        );
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("params   {}", params.join(" "));
        let w = self.metrics.iter().map(|(k, _)| k.len()).max().unwrap_or(6);
        println!("| {:w$} | {:>14} |", "metric", "value");
        println!("|-{:-<w$}-|-{:->14}-|", "", "");
        for (k, v) in &self.metrics {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("| {k:w$} | {v:>14} |");
        }
    }
}

/// Fires once per second, for progress lines.
pub struct Ticker {
    next: Instant,
}

impl Ticker {
    pub fn new() -> Self {
        Ticker {
            next: Instant::now() + Duration::from_secs(1),
        }
    }

    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += Duration::from_secs(1);
        }
        true
    }
}

/// New latency histogram in µs, 1 µs .. 100 s, 3 significant digits.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Resident set size of a process in KiB, from /proc/PID/status.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a server's threads have used, in seconds, by
/// thread name (`/proc/PID/task/*/stat`), plus the whole process as "all".
/// Threads of one name are summed.
pub fn thread_cpu_secs(pid: u32) -> Vec<(String, f64)> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let read = |path: &str| -> Option<(String, f64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        // The name is in parentheses and may hold spaces; fields follow it.
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        let t: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((name, t / ticks))
    };
    let mut out: Vec<(String, f64)> = Vec::new();
    if let Some((_, all)) = read(&format!("/proc/{pid}/stat")) {
        out.push(("all".into(), all));
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        if let Some((name, t)) = read(&format!("{}/stat", task.path().display())) {
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, sum)) => *sum += t,
                None => out.push((name, t)),
            }
        }
    }
    out
}

/// A server's CPU seconds by thread name at one moment (see
/// [`thread_cpu_secs`]); empty without a server pid.
pub struct CpuSample(Vec<(String, f64)>);

impl CpuSample {
    pub fn take(pid: Option<u32>) -> CpuSample {
        CpuSample(pid.map(thread_cpu_secs).unwrap_or_default())
    }

    /// Reports each thread's share of a core since `open` over `secs`
    /// (`server_cpu_<name>_pct`, "all" for the process) and returns the
    /// CPU seconds each used.
    pub fn report_since(&self, open: &CpuSample, secs: f64, r: &mut Report) -> Vec<(String, f64)> {
        let mut used_by = Vec::new();
        for (name, t) in &self.0 {
            let before = open.0.iter().find(|(n, _)| n == name).map_or(0.0, |x| x.1);
            let used = t - before;
            let pct = if secs > 0.0 { used / secs * 100.0 } else { 0.0 };
            r.metric(
                &format!("server_cpu_{name}_pct"),
                (pct * 10.0).round() / 10.0,
            );
            used_by.push((name.clone(), used));
        }
        used_by
    }
}
