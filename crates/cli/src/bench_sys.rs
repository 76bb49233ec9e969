//! What the benches read from the operating system: this process's CPU time and bytes written,
//! a node process's memory (`/proc/PID/status`), a directory's size on disk, and the open
//! files limit.

use std::path::Path;

use anyhow::Context;

/// CPU time (user + system) this process has used so far, all threads.
pub(crate) fn cpu_seconds() -> f64 {
    let Some(usage) = rusage() else { return 0.0 };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Bytes this process has had written to storage so far (the kernel counts 512-byte blocks).
pub(crate) fn written_bytes() -> u64 {
    rusage().map_or(0, |u| u64::try_from(u.ru_oublock).unwrap_or(0) * 512)
}

fn rusage() -> Option<libc::rusage> {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0).then_some(usage)
}

/// Raises this process's open files limit to its hard limit. A bench holding many nodes (or
/// their API connections) needs a few descriptors per node, above common soft limits of 1024;
/// child processes inherit the raised limit.
pub(crate) fn raise_open_files_limit() -> anyhow::Result<()> {
    // SAFETY: getrlimit/setrlimit only read and write the struct they are given, which is ours.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading RLIMIT_NOFILE");
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("raising the open files limit to its hard limit");
        }
    }
    Ok(())
}

/// A process's memory as the kernel reports it, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcMem {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// The highest resident set size the process has had (`VmHWM`, its high-water mark).
    pub hwm_kib: u64,
    /// Of `rss_kib`, anonymous memory (`RssAnon`: the heap, the block cache, the filters).
    pub anon_kib: u64,
    /// Of `rss_kib`, pages of mapped files (`RssFile`: the binary, a mapped lookup table),
    /// which the kernel may drop and read back under memory pressure.
    pub file_kib: u64,
}

impl ProcMem {
    /// Reads `/proc/PID/status`; an error if the process is gone.
    pub(crate) fn of(pid: u32) -> anyhow::Result<ProcMem> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Self::parse(&text).with_context(|| format!("{path} has no VmRSS/VmHWM lines"))
    }

    fn parse(status: &str) -> Option<ProcMem> {
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some(ProcMem {
            rss_kib: kib("VmRSS:")?,
            hwm_kib: kib("VmHWM:")?,
            // Absent before Linux 4.5: then unknown, not an error.
            anon_kib: kib("RssAnon:").unwrap_or(0),
            file_kib: kib("RssFile:").unwrap_or(0),
        })
    }
}

/// CPU time (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub(crate) fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("{path} has no utime/stime fields"))
}

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Waits until process `pid` is idle (under a tenth of a core over each of three half seconds
/// in a row), at most `patience`, and returns how long that took: the background work of what
/// came before (an LSM tree's flushes and compactions after a load, a copy of the lookup table
/// due once the writes stop) is not charged to what is timed next. One quiet half second is
/// not enough: the table's builder starts a due copy 0.5 to 0.7 s after the last write.
pub(crate) async fn settle(
    pid: u32,
    patience: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    const QUIET_WINDOWS: u32 = 3;
    let started = std::time::Instant::now();
    let window = std::time::Duration::from_millis(500);
    let mut quiet = 0;
    loop {
        let before = process_cpu_seconds(pid)?;
        tokio::time::sleep(window).await;
        let used = process_cpu_seconds(pid)? - before;
        quiet = if used < 0.1 * window.as_secs_f64() {
            quiet + 1
        } else {
            0
        };
        if quiet >= QUIET_WINDOWS || started.elapsed() >= patience {
            return Ok(started.elapsed());
        }
    }
}

pub(crate) fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Bytes under `dir`: what its files take on disk (allocated blocks, as `du` counts) and their
/// apparent length (as `ls` shows), summed over every file below it.
pub(crate) fn dir_bytes(dir: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut on_disk, mut apparent) = (0, 0);
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if meta.is_dir() {
            let (d, a) = dir_bytes(&entry.path())?;
            on_disk += d;
            apparent += a;
        } else {
            on_disk += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    Ok((on_disk, apparent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_high_water_mark_from_proc_status() {
        let text = "Name:\tintelmesh\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let m = ProcMem::parse(text).expect("both lines");
        assert_eq!(
            (m.rss_kib, m.hwm_kib, m.anon_kib, m.file_kib),
            (1024, 2048, 0, 0)
        );
        let split = format!("{text}RssAnon:\t  1000 kB\nRssFile:\t    24 kB\n");
        let m = ProcMem::parse(&split).expect("every line");
        assert_eq!((m.rss_kib, m.anon_kib, m.file_kib), (1024, 1000, 24));
        assert!(ProcMem::parse("Name:\tx\n").is_none());
        let own = ProcMem::of(std::process::id()).expect("this process");
        assert!(own.rss_kib > 0 && own.hwm_kib >= own.rss_kib);
        assert!(own.anon_kib + own.file_kib <= own.rss_kib);
    }

    #[test]
    fn reads_cpu_time_from_proc_stat_whatever_the_command_name() {
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 9 0 0";
        assert_eq!(parse_stat_cpu(line), Some(300.0 / ticks));
        assert_eq!(parse_stat_cpu("42 (x) S 1"), None);
        assert!(process_cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
