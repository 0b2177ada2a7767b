//! Process metrics read from /proc (Linux): resident memory, CPU time, open
//! file descriptors, start time. Elsewhere nothing is reported.

use prometheus_client::metrics::MetricType;

/// Clock ticks per second of /proc/self/stat's CPU times (USER_HZ, 100 on
/// every Linux port).
const TICKS_PER_SECOND: f64 = 100.0;

/// Hands each process series to `out` as (name, type, help, value).
pub fn series(out: &mut dyn FnMut(&'static str, MetricType, &'static str, f64)) {
    // VmRSS is in kB whatever the page size.
    if let Some(resident_kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
    {
        let help = "Resident memory size in bytes";
        out(
            "process_resident_memory_bytes",
            MetricType::Gauge,
            help,
            resident_kb * 1024.0,
        );
    }
    if let Some((cpu, start)) = cpu_and_start() {
        out(
            "process_cpu_seconds",
            MetricType::Counter,
            "User and system CPU time spent in seconds",
            cpu,
        );
        out(
            "process_start_time_seconds",
            MetricType::Gauge,
            "Start time of the process since the Unix epoch, in seconds",
            start,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out(
            "process_open_fds",
            MetricType::Gauge,
            "Open file descriptors",
            fds.count() as f64,
        );
    }
}

/// CPU seconds used, and the start time in Unix seconds.
fn cpu_and_start() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15, starttime 22.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu = (field(14)? + field(15)?) / TICKS_PER_SECOND;
    let since_boot = field(22)? / TICKS_PER_SECOND;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    Some((cpu, boot + since_boot))
}
