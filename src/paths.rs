//! Path and byte-string helpers shared by keys, inputs and outputs.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Encode OS bytes (argv, paths, env names) as a `String`, losslessly.
///
/// Valid UTF-8 is kept as it is. Anything else becomes `"\0"` followed by the bytes in hex: argv
/// elements, paths and env entries are C strings and can never contain NUL, so the marker is
/// unambiguous and two different byte strings never encode alike (which the key relies on).
pub fn encode_os(s: &OsStr) -> String {
    match std::str::from_utf8(s.as_bytes()) {
        // (A leading NUL would read as the marker: such a string is hex-encoded too. Real
        // argv, paths and env entries never contain NUL; the encoding is unambiguous anyway.)
        Ok(utf8) if !utf8.starts_with('\0') => utf8.to_owned(),
        _ => {
            let mut out = String::with_capacity(1 + 2 * s.len());
            out.push('\0');
            for b in s.as_bytes() {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

/// The inverse of [`encode_os`].
pub fn decode_os(s: &str) -> OsString {
    match s.strip_prefix('\0') {
        Some(hex) if hex.len() % 2 == 0 => {
            // By bytes: a string from a damaged record may hold multi-byte characters here.
            let bytes: Option<Vec<u8>> = hex
                .as_bytes()
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                })
                .collect();
            match bytes {
                Some(b) => OsString::from_vec(b),
                None => OsString::from(s),
            }
        }
        _ => OsString::from(s),
    }
}

/// A human-readable form of an [`encode_os`] string (invalid bytes shown as U+FFFD).
pub fn display_encoded(s: &str) -> String {
    if s.starts_with('\0') {
        decode_os(s).to_string_lossy().into_owned()
    } else {
        s.to_owned()
    }
}

/// Lexically normalise a relative path as the user declared it: drop `.` components and
/// trailing slashes; keep `..` (callers decide whether they allow it). `"./a//b/"` → `"a/b"`.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Resolve `.` and `..` lexically (no filesystem access): `/a/b/../c` → `/a/c`.
pub fn resolve_lexically(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Why an output path cannot be used: it is absolute or climbs out with `..`.
pub fn check_inside(p: &Path) -> Result<PathBuf, &'static str> {
    if p.is_absolute() {
        return Err("is absolute");
    }
    let n = normalize(p);
    if n.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("contains `..`");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_lossless_and_unambiguous() {
        let bad = OsStr::from_bytes(b"a\xffb");
        let enc = encode_os(bad);
        assert_eq!(enc, "\0".to_owned() + "61ff62");
        assert_eq!(decode_os(&enc), bad);
        assert_eq!(encode_os(OsStr::new("héllo")), "héllo");
        assert_eq!(decode_os("héllo"), OsStr::new("héllo"));
        // A lone NUL (or any leading NUL) round-trips.
        assert_eq!(decode_os(&encode_os(OsStr::new("\0"))), OsStr::new("\0"));
        assert_eq!(
            decode_os(&encode_os(OsStr::new("\0ab"))),
            OsStr::new("\0ab")
        );
        // Not valid hex after the marker (a damaged record): kept as text, no panic.
        assert_eq!(decode_os("\0aéb"), OsStr::new("\0aéb"));
    }

    #[test]
    fn normalize_and_check() {
        assert_eq!(normalize(Path::new("./a//b/")), PathBuf::from("a/b"));
        assert_eq!(normalize(Path::new(".")), PathBuf::from("."));
        assert!(check_inside(Path::new("/etc/passwd")).is_err());
        assert!(check_inside(Path::new("../x")).is_err());
        assert!(check_inside(Path::new("a/../../x")).is_err());
        assert_eq!(
            check_inside(Path::new("./out/a.o")).unwrap(),
            PathBuf::from("out/a.o")
        );
    }
}
