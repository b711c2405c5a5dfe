//! Once a process has started, forget its mappings of the code and
//! constant data that only starting needed: a worker runs the command
//! line parser, the config language and every plugin's directive table
//! once, and each of those functions leaves a 64 KiB window of the binary
//! mapped (the kernel maps the pages around a fault with it), about 4 MiB
//! of code and 2 MiB of constants a process, nine times over with eight
//! workers. This is the userspace cousin of the kernel freeing its
//! `__init` sections after boot.
//!
//! What is dropped (`MADV_DONTNEED`) is the read-only segments of the
//! loaded objects (the binary, libc, …: `PT_LOAD` without `PF_W`, so
//! never the relocated `.data.rel.ro`, which lives in a writable segment),
//! and of those only the mappings that `/proc/self/smaps` shows to hold
//! nothing but the file's own pages: no private page, in memory
//! (`Anonymous`) or swapped out (`Swap`), none of hugetlbfs, no special
//! kind of mapping. Their next access maps the file's pages again, from
//! the page cache or the disk, as after the kernel reclaimed them, which
//! it may do to such pages at any time anyway; a write to the file in
//! place would already show through a mapping without private pages, so
//! no byte a program can read changes. The objects are walked with
//! `dl_iterate_phdr`, whose lock keeps a library from being loaded or
//! unloaded meanwhile, and smaps is read under it too.
//!
//! What this saves is each process's count of shared pages (its RSS and
//! proportional share) and the executable pages' claim to stay mapped;
//! the page cache holds the binary as before.

use std::ops::Range;

/// Flags of `VmFlags` that make a mapping one to leave alone: I/O or
/// raw-frame mappings, hugetlb, locked, userfaultfd-watched.
const SPECIAL: [&str; 8] = ["io", "pf", "mm", "ht", "lo", "um", "uw", "ui"];

/// Drop this process's mappings of the read-only segments of its loaded
/// objects that hold only the file's pages (see the module doc). Best
/// effort: a failure changes nothing. No other thread of the process
/// may map or unmap code meanwhile other than through the dynamic loader
/// (true where it is called: a worker before it accepts, the master
/// between its events).
pub(crate) fn release() {
    let mut clean: Option<Vec<Range<usize>>> = None;
    // SAFETY: the callback only reads the program headers the loader
    // passes it, for the duration of the call, and `data` is `clean`.
    unsafe {
        libc::dl_iterate_phdr(Some(each_object), (&mut clean as *mut Option<_>).cast());
    }
}

/// `dl_iterate_phdr`'s callback: drop the clean mappings of one object's
/// read-only segments. `data` is the `Option` of [`release`], filled with
/// the clean mappings on the first call (under the loader's lock, like
/// every call).
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid info, and `data` is the `Option`
    // that `release` lent, not otherwise used during the call.
    let (info, clean) = unsafe { (&*info, &mut *data.cast::<Option<Vec<Range<usize>>>>()) };
    let clean = clean.get_or_insert_with(|| {
        std::fs::read_to_string("/proc/self/smaps")
            .map(|smaps| clean_mappings(&smaps))
            .unwrap_or_default()
    });
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader's array of `dlpi_phnum` program headers.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let segments = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
        .map(|h| {
            let start = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
            start..start.saturating_add(h.p_memsz as usize)
        });
    for segment in segments {
        for range in droppable(&segment, clean, page_size()) {
            // SAFETY: a whole number of pages of a read-only segment of a
            // loaded object that hold only the file's pages: dropping
            // them changes no byte any code can read, only when it is
            // read from the file again.
            unsafe {
                libc::madvise(
                    range.start as *mut libc::c_void,
                    range.end - range.start,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
    0
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The parts of `segment` that lie in `clean` mappings, in whole pages
/// (a page the segment shares with a neighbour is not taken).
fn droppable(segment: &Range<usize>, clean: &[Range<usize>], page: usize) -> Vec<Range<usize>> {
    let start = segment.start.div_ceil(page).saturating_mul(page);
    let end = segment.end / page * page;
    clean
        .iter()
        .map(|m| start.max(m.start)..end.min(m.end))
        .filter(|r| r.start < r.end)
        .collect()
}

/// The mappings of `smaps` (the text of `/proc/PID/smaps`) that are
/// private, readable, not writable, backed by a file, of no special kind,
/// and that say they hold no private page in memory or in swap and no
/// hugetlb page. A mapping whose fields do not say so is not taken.
fn clean_mappings(smaps: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    // The mapping being read while it qualifies, with whether its
    // `Anonymous` and `Swap` fields have been seen at 0.
    let mut current: Option<(Range<usize>, bool, bool)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        let Some(name) = first.strip_suffix(':') else {
            current = mapping_header(first, fields).map(|r| (r, false, false));
            continue;
        };
        let Some((_, anonymous, swap)) = current.as_mut() else {
            continue;
        };
        match name {
            "Anonymous" | "Swap" | "Private_Hugetlb" | "Shared_Hugetlb" => {
                match (name, fields.next() == Some("0")) {
                    ("Anonymous", true) => *anonymous = true,
                    ("Swap", true) => *swap = true,
                    (_, true) => {}
                    (_, false) => current = None,
                }
            }
            // The last field of a mapping.
            "VmFlags" => {
                let special = fields.any(|f| SPECIAL.contains(&f));
                if let Some((range, true, true)) = current.take() {
                    if !special {
                        found.push(range);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The address range of a header line of smaps (`START-END PERMS OFFSET
/// DEV INODE PATH`) if the mapping may be dropped by its header:
/// readable, not writable, private, and of a file (an inode and a path).
fn mapping_header<'a>(
    range: &str,
    mut rest: impl Iterator<Item = &'a str>,
) -> Option<Range<usize>> {
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = rest.next()?.as_bytes();
    let (_offset, _dev, inode) = (rest.next()?, rest.next()?, rest.next()?);
    let path = rest.next()?;
    let dropable = perms.len() == 4
        && perms[0] == b'r'
        && perms[1] == b'-'
        && perms[3] == b'p'
        && inode != "0"
        && path.starts_with('/')
        && start < end;
    dropable.then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of a mapping that holds only its file's pages.
    const CLEAN: &str = "Rss: 1900 kB\nAnonymous: 0 kB\nSwap: 0 kB\nPrivate_Hugetlb: 0 kB\n";

    fn entry(header: &str, fields: &str, flags: &str) -> String {
        format!("{header}\n{fields}VmFlags: {flags}\n")
    }

    /// A worker's smaps, cut short: the binary's constants and code (only
    /// the file's pages), its relocated data (private pages), the same
    /// with its private pages swapped out, a writable segment, the heap,
    /// a shared file, an anonymous read-only mapping, libc's code, the
    /// vdso, a locked mapping and a hugetlbfs one.
    fn worker_smaps() -> String {
        [
            entry("55d0a0000000-55d0a03d9000 r--p 00000000 fe:00 5406830 /usr/bin/axkit", CLEAN, "rd mr mw me sd"),
            entry("55d0a03da000-55d0a0f4b000 r-xp 003d9000 fe:00 5406830 /usr/bin/axkit", CLEAN, "rd ex mr mw me sd"),
            entry("55d0a0f4b000-55d0a0fb4000 r--p 00f49000 fe:00 5406830 /usr/bin/axkit", "Anonymous: 420 kB\nSwap: 0 kB\n", "rd mr mw me ac sd"),
            entry("7f7767cc3000-7f7767cc5000 r--p 001cc000 fe:00 1311 /usr/lib/x86_64-linux-gnu/libm.so.6", "Anonymous: 0 kB\nSwap: 8 kB\n", "rd mr mw me ac sd"),
            entry("55d0a0fb4000-55d0a0fbf000 rw-p 00fb1000 fe:00 5406830 /usr/bin/axkit", "Anonymous: 44 kB\nSwap: 0 kB\n", "rd wr mr mw me ac sd"),
            entry("55d0a1000000-55d0a1042000 rw-p 00000000 00:00 0 [heap]", "Anonymous: 180 kB\nSwap: 0 kB\n", "rd wr mr mw me ac sd"),
            entry("7f0000000000-7f0000100000 r--s 00000000 00:01 1234 /memfd:zone (deleted)", CLEAN, "rd sh mr mw me ms sd"),
            entry("7f0000200000-7f0000201000 r--p 00000000 00:00 0", CLEAN, "rd mr mw me sd"),
            entry("7f7767b16000-7f7767c6c000 r-xp 00026000 fe:00 1311 /usr/lib/x86_64-linux-gnu/libc.so.6", CLEAN, "rd ex mr mw me sd"),
            entry("7ffc32ffe000-7ffc33000000 r-xp 00000000 00:00 0 [vdso]", CLEAN, "rd ex mr mw me de sd"),
            entry("7f0000300000-7f0000400000 r--p 00000000 fe:00 77 /var/lib/locked", CLEAN, "rd mr mw me lo sd"),
            entry("7f0000400000-7f0000600000 r--p 00000000 00:0f 78 /dev/hugepages/h", "Anonymous: 0 kB\nSwap: 0 kB\nPrivate_Hugetlb: 2048 kB\n", "rd mr mw me sd"),
        ]
        .concat()
    }

    #[test]
    fn only_read_only_file_mappings_with_only_the_files_pages() {
        assert_eq!(
            clean_mappings(&worker_smaps()),
            vec![
                0x55d0a0000000..0x55d0a03d9000,
                0x55d0a03da000..0x55d0a0f4b000,
                0x7f7767b16000..0x7f7767c6c000,
            ]
        );
    }

    #[test]
    fn a_mapping_that_does_not_say_it_is_clean_is_not_taken() {
        let header = "1000-2000 r--p 00000000 fe:00 5 /lib/x.so";
        // No VmFlags line: the mapping's fields were not all seen.
        assert!(clean_mappings(&format!("{header}\n{CLEAN}")).is_empty());
        // No Anonymous field, or no Swap field.
        assert!(clean_mappings(&entry(header, "Swap: 0 kB\n", "rd")).is_empty());
        assert!(clean_mappings(&entry(header, "Anonymous: 0 kB\n", "rd")).is_empty());
        // A garbled header.
        let garbled = "zz-2000 r--p 00000000 fe:00 5 /lib/x.so";
        assert!(clean_mappings(&entry(garbled, CLEAN, "rd")).is_empty());
        // Private pages after a clean start.
        let later = format!("{CLEAN}Anonymous: 4 kB\n");
        assert!(clean_mappings(&entry(header, &later, "rd")).is_empty());
        // The same mapping, clean, is taken: the cases above fail for
        // what they lack.
        assert_eq!(
            clean_mappings(&entry(header, CLEAN, "rd")),
            vec![0x1000..0x2000]
        );
    }

    #[test]
    fn only_whole_pages_of_a_segment_within_clean_mappings() {
        let clean = [0x10000..0x20000, 0x30000..0x40000];
        // A segment over both, with a partial first and last page.
        assert_eq!(
            droppable(&(0x0f800..0x3f800), &clean, 0x1000),
            vec![0x10000..0x20000, 0x30000..0x3f000]
        );
        // A segment in the gap, or within a single page.
        assert!(droppable(&(0x20000..0x30000), &clean, 0x1000).is_empty());
        assert!(droppable(&(0x10100..0x10f00), &clean, 0x1000).is_empty());
    }

    /// Constants the child below reads, releases and reads again: 4 MiB,
    /// not all zero so that they are not in `.bss`.
    const BLOCK: [u8; 4096] = {
        let mut b = [0u8; 4096];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i % 251) as u8 + 1;
            i += 1;
        }
        b
    };
    static TABLE: [[u8; 4096]; 1024] = [BLOCK; 1024];

    /// The resident kB of the mapping of this process holding `addr`.
    fn resident_at(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut rss = None;
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_ascii_whitespace().next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let start = usize::from_str_radix(start, 16).unwrap_or(usize::MAX);
                let end = usize::from_str_radix(end, 16).unwrap_or(0);
                inside = (start..end).contains(&addr);
            } else if inside && first == "Rss:" {
                rss = line
                    .split_ascii_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok());
            }
        }
        rss.unwrap()
    }

    /// Run alone in a child process (see the test below), so that no
    /// other test's thread maps pages meanwhile.
    #[test]
    #[ignore]
    fn child() {
        if std::env::var_os("AXKIT_STARTUP_PAGES_CHILD").is_none() {
            return;
        }
        let sum = |t: &[u8]| t.iter().map(|&b| u64::from(b)).sum::<u64>();
        let table = TABLE.as_flattened();
        let before_sum = sum(std::hint::black_box(table));
        let at = table.as_ptr() as usize + table.len() / 2;
        let before = resident_at(at);
        release();
        let after = resident_at(at);
        // A call through a vtable: the relocated `.data.rel.ro` is intact.
        let f: Box<dyn Fn(u64) -> u64> = Box::new(move |x| x + before_sum);
        let again = f(0);
        let after_sum = sum(std::hint::black_box(table));
        println!("resident {before} {after} sums {before_sum} {again} {after_sum}");
    }

    /// A process that read 4 MiB of constants and released its startup
    /// pages has that much less resident, reads the same bytes again,
    /// and still calls through its relocated vtables.
    #[test]
    fn a_process_maps_fewer_constants_and_reads_the_same() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "server::startup_pages::tests::child",
                "--ignored",
                "--nocapture",
            ])
            .arg("--test-threads=1")
            .env("AXKIT_STARTUP_PAGES_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // libtest may print the test's name on the same line first.
        let line = text
            .lines()
            .find_map(|l| l.find("resident ").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("child said: {text}"));
        let n: Vec<u64> = line
            .split_ascii_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [before, after, sum, again, sum_after] = n[..] else {
            panic!("{line}");
        };
        assert!(before >= 4096, "the constants were not resident: {line}");
        assert!(
            after + 3072 <= before,
            "the constants stayed mapped: {line}"
        );
        assert_eq!((again, sum_after), (sum, sum), "{line}");
    }
}
