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
        })
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
        assert_eq!((m.rss_kib, m.hwm_kib), (1024, 2048));
        assert!(ProcMem::parse("Name:\tx\n").is_none());
        let own = ProcMem::of(std::process::id()).expect("this process");
        assert!(own.rss_kib > 0 && own.hwm_kib >= own.rss_kib);
    }
}
