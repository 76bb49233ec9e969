//! Backing the store's large in-memory arrays (the lookup table's hash index, the presence
//! filters) with 2 MiB pages.
//!
//! Why: every probe of those arrays lands on a random line of tens to hundreds of MiB. With
//! 4 KiB pages each such line also misses the TLB, and on a virtual machine the walk that
//! follows goes through two sets of page tables. The kernel backs memory with 2 MiB pages only
//! where it is asked to (`transparent_hugepage` set to `madvise`, the common default), so the
//! arrays ask.
//!
//! Advice only: a kernel that declines (another setting, no free 2 MiB pages, another OS)
//! leaves the memory as it was, with the same contents.

/// Asks the kernel to back the 2 MiB-aligned part of `items`' memory with 2 MiB pages on later
/// faults (`MADV_HUGEPAGE`) and now (`MADV_COLLAPSE`, which copies what was written there:
/// memory asked for before it is written, such as a vector's spare capacity, is not copied).
pub(crate) fn back_with_huge_pages<T>(items: &[T]) {
    #[cfg(target_os = "linux")]
    linux::advise(items.as_ptr() as usize, std::mem::size_of_val(items));
    #[cfg(not(target_os = "linux"))]
    let _ = items;
}

#[cfg(target_os = "linux")]
mod linux {
    /// The size of a transparent huge page on x86-64 and the usual arm64 kernels.
    const HUGE_PAGE: usize = 2 << 20;
    /// `MADV_COLLAPSE` (Linux 6.1), not yet in the `libc` crate.
    const MADV_COLLAPSE: libc::c_int = 25;

    pub(super) fn advise(start: usize, len: usize) {
        // Only whole huge pages inside the array: advice about a neighbour's memory could
        // make pages resident that it never touched.
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + len) / HUGE_PAGE * HUGE_PAGE;
        if end <= first {
            return;
        }
        for advice in [libc::MADV_HUGEPAGE, MADV_COLLAPSE] {
            // SAFETY: [first, end) lies inside the caller's slice, which this process owns
            // and keeps mapped for the call; both advices change only how its pages are
            // backed, never their contents or the mapping's validity.
            let r = unsafe { libc::madvise(first as *mut libc::c_void, end - first, advice) };
            if r != 0 {
                tracing::debug!(
                    advice,
                    error = %std::io::Error::last_os_error(),
                    bytes = end - first,
                    "2 MiB pages declined; the array keeps 4 KiB pages"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_leaves_every_value_as_it_was() {
        // Large enough to hold whole 2 MiB pages wherever the allocator puts it.
        let values: Vec<u64> = (0..1_500_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        back_with_huge_pages(&values);
        assert!(values
            .iter()
            .enumerate()
            .all(|(i, v)| *v == (i as u64).wrapping_mul(0x9e37_79b9)));
        // Too small to hold a whole huge page: nothing to ask, nothing changed.
        let few = [1u8, 2, 3];
        back_with_huge_pages(&few);
        assert_eq!(few, [1, 2, 3]);
    }

    /// The kernel's answer for the mapping holding `at`: its `AnonHugePages` in KiB.
    #[cfg(target_os = "linux")]
    fn huge_kib_around(at: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
            let bounds = range.and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            });
            if let Some((start, end)) = bounds {
                inside = (start..end).contains(&at);
            } else if inside {
                if let Some(kib) = line.strip_prefix("AnonHugePages:") {
                    return kib.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_array_asked_for_is_backed_by_huge_pages_where_the_kernel_offers_them() {
        let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        match setting {
            Ok(s) if !s.contains("[never]") => {}
            other => {
                println!("skipped: this kernel offers no transparent huge pages ({other:?})");
                return;
            }
        }
        // 16 MiB: whole 2 MiB pages inside it wherever it lands.
        let values = vec![7u64; 2 << 20];
        back_with_huge_pages(&values);
        let kib = huge_kib_around(values.as_ptr() as usize + values.len() * 4);
        assert!(
            kib.is_some_and(|k| k >= 2048),
            "the array's mapping holds {kib:?} KiB of huge pages"
        );
        assert!(values.iter().all(|v| *v == 7));
    }
}
