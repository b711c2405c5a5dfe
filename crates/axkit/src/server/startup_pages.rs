//! Once a process has started, forget its mappings of the code and
//! constant data that only starting needed: a worker runs the command
//! line parser, the config language and every plugin's directive table
//! once, and each of those functions leaves a 64 KiB window of the binary
//! mapped (the kernel maps the pages around a fault with it), about 4 MiB
//! of code and 2 MiB of constants a process, nine times over with eight
//! workers. This is the userspace cousin of the kernel freeing its
//! `__init` sections after boot.
//!
//! Only read-only private file mappings that hold no private page are
//! dropped (`MADV_DONTNEED`): their pages are the file's, still in the
//! page cache, and a later access maps them again from there, as after
//! the kernel reclaimed them under memory pressure, which it may do to
//! these pages at any time anyway. A mapping with a private page (the
//! relocated `.data.rel.ro`, a debugger's breakpoint) is left alone: its
//! pages are not the file's. What this saves is each process's count of
//! shared pages (RSS, and the proportional share) and the exec pages'
//! claim to stay mapped; the page cache holds the binary as before.

use std::ops::Range;

/// Drop this process's read-only file mappings that hold no private page
/// (see the module doc). Best effort: a failure changes nothing.
pub(crate) fn release() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for range in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process that holds
        // only the file's own pages and is not writable: dropping them
        // changes no byte any code can read, only when it is read from.
        unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// The mappings of `smaps` (the text of `/proc/PID/smaps`) that are
/// private, readable, not writable, backed by a file (a path and an
/// inode) and hold no anonymous page.
fn clean_file_mappings(smaps: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    // The mapping being read, while it still qualifies.
    let mut current: Option<Range<usize>> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some(name) = first.strip_suffix(':') {
            // A field of the mapping being read: `Anonymous:` decides it,
            // and `VmFlags:` is its last line.
            if name == "Anonymous" && fields.next() != Some("0") {
                current = None;
            } else if name == "VmFlags" {
                found.extend(current.take());
            }
            continue;
        }
        current = mapping_header(first, fields);
    }
    found
}

/// The address range of a header line of smaps (`START-END PERMS OFFSET
/// DEV INODE PATH`) if the mapping may be dropped by its header.
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

    /// A worker's smaps, cut short: the binary's constants and code (no
    /// private page), its relocated data (private pages), a writable
    /// segment, an anonymous mapping, a shared file and the vdso.
    const SMAPS: &str = "\
55d0a0000000-55d0a03d9000 r--p 00000000 fe:00 5406830 /usr/bin/axkit
Size:               3940 kB
Rss:                1900 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55d0a03da000-55d0a0f4b000 r-xp 003d9000 fe:00 5406830 /usr/bin/axkit
Size:              11716 kB
Rss:                3900 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
55d0a0f4b000-55d0a0fb4000 r--p 00f49000 fe:00 5406830 /usr/bin/axkit
Size:                420 kB
Anonymous:           420 kB
VmFlags: rd mr mw me ac sd
55d0a0fb4000-55d0a0fbf000 rw-p 00fb1000 fe:00 5406830 /usr/bin/axkit
Anonymous:            44 kB
VmFlags: rd wr mr mw me ac sd
55d0a1000000-55d0a1042000 rw-p 00000000 00:00 0 [heap]
Anonymous:           180 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0000100000 rw-s 00000000 00:01 1234 /dev/zero (deleted)
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms sd
7f0000200000-7f0000201000 r--p 00000000 00:00 0
Anonymous:             0 kB
VmFlags: rd mr mw me sd
7f7767b16000-7f7767c6c000 r-xp 00026000 fe:00 1311 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
7ffc32ffe000-7ffc33000000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
VmFlags: rd ex mr mw me de sd
";

    #[test]
    fn only_read_only_file_mappings_without_private_pages() {
        assert_eq!(
            clean_file_mappings(SMAPS),
            vec![
                0x55d0a0000000..0x55d0a03d9000,
                0x55d0a03da000..0x55d0a0f4b000,
                0x7f7767b16000..0x7f7767c6c000,
            ]
        );
    }

    #[test]
    fn a_mapping_cut_short_or_garbled_is_not_taken() {
        // No VmFlags line: the mapping's fields were not all seen.
        let cut = "55d0a0000000-55d0a03d9000 r--p 00000000 fe:00 5406830 /usr/bin/axkit\nAnonymous: 0 kB\n";
        assert!(clean_file_mappings(cut).is_empty());
        let garbled = "zz-55d0a03d9000 r--p 00000000 fe:00 5406830 /usr/bin/axkit\nAnonymous: 0 kB\nVmFlags: rd\n";
        assert!(clean_file_mappings(garbled).is_empty());
        // Anonymous pages after the header: not taken, even with a
        // VmFlags line.
        let private = "1000-2000 r--p 00000000 fe:00 5 /lib/x.so\nAnonymous: 4 kB\nVmFlags: rd\n";
        assert!(clean_file_mappings(private).is_empty());
    }

    /// Dropping really happens and the bytes read afterwards are the
    /// file's: a private read-only mapping of a file is read, released,
    /// and read again.
    #[test]
    fn a_released_mapping_reads_the_same() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let content: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a fresh private read-only mapping of a file we made,
        // unmapped below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                content.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        // SAFETY: the mapping is content.len() readable bytes.
        let bytes = || unsafe { std::slice::from_raw_parts(map as *const u8, content.len()) };
        assert!(bytes() == content.as_slice());
        let start = map as usize;
        let resident = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let header = format!("{start:x}-");
            let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&header));
            lines
                .find_map(|l| l.strip_prefix("Rss:"))
                .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap())
                .unwrap()
        };
        assert_eq!(resident(), 1024);
        release();
        assert_eq!(resident(), 0, "the mapping was not dropped");
        assert!(bytes() == content.as_slice());
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(map, content.len()) };
    }
}
