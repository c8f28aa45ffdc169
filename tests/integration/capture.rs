//! A capture is stored only when it is everything the command wrote (issue 12): a reader that
//! goes away, cachectl's own stdout failing, or a non-blocking descriptor inherited from the
//! caller must never leave a partial result in the cache, nor change what the command gets.

use crate::manage::json;
use crate::util::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::Duration;

/// A script that survives a closed stdout (as Python, Go and many long-running tools do): it
/// ignores SIGPIPE, prints one line, waits until `go` exists (the test creates it once it has
/// closed its reader), then prints 5000 more lines, and exits 0.
fn survives_epipe(t: &TestContext, name: &str, go: &std::path::Path) {
    t.counted(
        name,
        &format!(
            "trap '' PIPE\necho 'line 1'\nwhile [ ! -e '{}' ]; do sleep 0.01; done\n\
             i=2; while [ $i -le 5000 ]; do echo \"line $i\" 2>/dev/null; i=$((i+1)); done\nexit 0",
            go.display()
        ),
    );
}

fn uncacheable(t: &TestContext, reason: &str) -> u64 {
    let s = json(t.cachectl(&["stats", "--json"]));
    s["uncacheable"][reason].as_u64().unwrap_or(0)
}

fn set_nonblocking(fd: &impl AsRawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        assert!(flags >= 0);
        assert_eq!(
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK),
            0
        );
    }
}

/// `cachectl run -- ./lines | head -n 1`, then the full run: the second run must run the
/// command again and print all 5000 lines (it replayed the ~200 captured ones before the fix).
#[test]
fn a_capture_cut_short_by_a_closed_reader_is_never_stored() {
    let t = TestContext::new();
    let go = t.root.join("go");
    survives_epipe(&t, "lines", &go);
    let mut run = t.run(&["--", "./lines"]).cmd;
    run.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn_guarded(&mut run);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here, as `head -n 1` exits; then the script writes on.
    assert_eq!(first, "line 1\n");
    std::fs::write(&go, "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the command's own exit code");
    assert_eq!(t.count(), 1);

    let a = t.miss(t.run(&["-v", "--", "./lines"])).success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert_eq!(out.lines().count(), 5000, "{}", summary(&a));
    assert_eq!(out.lines().last(), Some("line 5000"));
    assert_eq!(uncacheable(&t, "reader_gone"), 1);
    // The complete run was stored.
    let a = t.hit(t.run(&["--", "./lines"])).success();
    assert_eq!(stdout_of(&a).len(), out.len());
}

/// `2>&1 | head -c 10`: both streams share the reader that goes away.
#[test]
fn a_closed_reader_of_stderr_is_never_stored_either() {
    let t = TestContext::new();
    let go = t.root.join("go");
    t.counted(
        "errlines",
        &format!(
            "trap '' PIPE\necho first >&2\nwhile [ ! -e '{}' ]; do sleep 0.01; done\n\
             i=0; while [ $i -lt 3000 ]; do echo \"err $i\" >&2 2>/dev/null; i=$((i+1)); done",
            go.display()
        ),
    );
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut run = t.run(&["--", "./errlines"]).cmd;
    run.stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let mut child = spawn_guarded(&mut run);
    drop(run);
    let mut head = [0u8; 6];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"first\n");
    drop(reader);
    std::fs::write(&go, "").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let a = t.miss(t.run(&["--", "./errlines"])).success();
    assert_eq!(stderr_of(&a).lines().count(), 3001);
    assert_eq!(uncacheable(&t, "reader_gone"), 1);
}

/// Writes into a non-blocking pipe that is full fail with EAGAIN. That is the caller's flag
/// on a descriptor cachectl shares (node and some CI runners leave stdout non-blocking): the
/// output must arrive whole, the run be stored, and the hit replay whole too. Before the fix
/// cachectl took EAGAIN for a reader that went away: the command died of SIGPIPE (exit 141).
#[test]
fn a_non_blocking_stdout_gets_the_whole_output_on_a_miss_and_a_hit() {
    let t = TestContext::new();
    let data = binary_data(1 << 20);
    t.write("data.bin", &data);
    t.counted("big", "cat data.bin; echo done >&2");
    for expect_hit in [false, true] {
        let (mut reader, writer) = std::io::pipe().unwrap();
        set_nonblocking(&writer);
        let mut run = t.run(&["--", "./big"]).cmd;
        run.stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped());
        let before = t.count();
        let mut child = spawn_guarded(&mut run);
        drop(run);
        // A slow reader: the 64 KiB pipe fills up while we sleep.
        std::thread::sleep(Duration::from_millis(300));
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "stderr: {err}");
        assert!(got == data, "stdout: {} of {} bytes", got.len(), data.len());
        assert_eq!(err, "done\n");
        assert_eq!(
            t.count(),
            before + usize::from(!expect_hit),
            "hit: {expect_hit}"
        );
    }
}

/// `--stdin` from a non-blocking pipe whose writer pauses: the command must get all of it
/// (before the fix it got the first part, and that result was stored under its digest).
#[test]
fn a_non_blocking_stdin_reaches_the_command_in_full() {
    let t = TestContext::new();
    t.counted("upper", "tr a-z A-Z");
    let (reader, mut writer) = std::io::pipe().unwrap();
    set_nonblocking(&reader);
    let mut run = t.run(&["--stdin", "--", "./upper"]).cmd;
    run.stdin(reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = spawn_guarded(&mut run);
    drop(run);
    writer.write_all(b"first part\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(b"second part\n").unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "FIRST PART\nSECOND PART\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    // Stored under the digest of the whole input.
    t.hit(
        t.run(&["--stdin", "--", "./upper"])
            .stdin("first part\nsecond part\n"),
    )
    .success()
    .stdout("FIRST PART\nSECOND PART\n");
}

/// cachectl's stdout on a full disk (`/dev/full`): the output is lost, so the run fails (exit 1,
/// one warning) and is not stored, as `cmd > /dev/full` fails without cachectl. Before the fix
/// it exited 0 and stored the result. A hit replayed into `/dev/full` fails the same way and
/// keeps its entry (it used to drop it and run the command, writing after the partial replay).
#[test]
fn a_stdout_that_cannot_be_written_fails_the_run_and_stores_nothing() {
    let t = TestContext::new();
    t.counted("hello", "echo hello");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut run = t.run(&["--", "./hello"]).cmd;
    let out = run.stdin(Stdio::null()).stdout(full()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(warnings(&err).len(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(uncacheable(&t, "capture_failed"), 1);
    t.miss(t.run(&["--", "./hello"]))
        .success()
        .stdout("hello\n");

    let mut run = t.run(&["--", "./hello"]).cmd;
    let before = t.count();
    let out = run.stdin(Stdio::null()).stdout(full()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(warnings(&err).len(), 1, "{err}");
    assert_eq!(
        t.count(),
        before,
        "the command must not run after a partial replay"
    );
    t.hit(t.run(&["--", "./hello"])).success().stdout("hello\n");
}

/// `--stdin` with no usable temp dir (TMPDIR missing): the command must still get its input.
/// Before the fix it got /dev/null, and that empty result was stored under the input's digest,
/// so the next run with a working TMPDIR hit and printed nothing.
#[test]
fn stdin_reaches_the_command_when_the_temp_dir_is_unusable() {
    let t = TestContext::new();
    t.counted("upper", "tr a-z A-Z");
    t.miss(
        t.run(&["--stdin", "--", "./upper"])
            .env("TMPDIR", t.root.join("missing"))
            .stdin("hello\n"),
    )
    .success()
    .stdout("HELLO\n");
    t.hit(t.run(&["--stdin", "--", "./upper"]).stdin("hello\n"))
        .success()
        .stdout("HELLO\n");
}

/// A command that keeps writing after cachectl's stdout failed (`seq 100000 > /dev/full`): it
/// must not be killed by a SIGPIPE it never had cause for; the run exits 1 (as the command alone
/// does), counted as `capture_failed`, not `signal`.
#[test]
fn a_command_writing_on_after_stdout_failed_is_not_killed() {
    let t = TestContext::new();
    t.counted(
        "many",
        "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done; echo end >&2",
    );
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut run = t.run(&["--", "./many"]).cmd;
    let out = run.stdin(Stdio::null()).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("end\n"),
        "the command ran to its end: {err}"
    );
    assert_eq!(uncacheable(&t, "capture_failed"), 1);
    assert_eq!(uncacheable(&t, "signal"), 0);
}

/// cachectl's own stderr messages (`-v`, warnings) on a full non-blocking pipe: EAGAIN must be
/// waited out, not abort cachectl (`eprintln!` panics on it). The entry's stderr is exactly one
/// pipe buffer, so the `hit` line after the replay finds the pipe full.
#[test]
fn a_full_non_blocking_stderr_does_not_abort_cachectl() {
    let t = TestContext::new();
    let (probe, _w) = std::io::pipe().unwrap();
    // SAFETY: F_GETPIPE_SZ on a pipe we own.
    let capacity = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(capacity > 0);
    t.write("err.bin", vec![b'e'; capacity as usize]);
    t.counted("fill", "cat err.bin >&2");
    t.miss(t.run(&["--", "./fill"])).success();
    let (mut reader, writer) = std::io::pipe().unwrap();
    set_nonblocking(&writer);
    let mut run = t.run(&["-v", "--", "./fill"]).cmd;
    run.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    let before = t.count();
    let mut child = spawn_guarded(&mut run);
    drop(run);
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(t.count(), before, "a hit");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with(&"e".repeat(capacity as usize)),
        "{}",
        text.len()
    );
    let rest = &text[capacity as usize..];
    assert!(
        rest.starts_with("cachectl: hit "),
        "after the replay: {rest:?}"
    );
}
