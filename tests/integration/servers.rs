//! Real remote-tier servers for the remote tests: Redis, WebDAV (nginx + dav-ext) and S3
//! (s3s-fs), each started on 127.0.0.1 on a free port with its own temp dir, and killed (with
//! everything it started) when its [`Server`] is dropped.
//!
//! A server binary missing from PATH skips the test (a note on stderr), except under `CI=true`,
//! where it fails the test naming the binary: CI must never pass without having tested.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DAV_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
const S3_BUCKET: &str = "cachebkt";
const S3_PREFIX: &str = "prefix";
/// Where the Redis backend roots its keys (`backend.rs`: `.root("/cachectl")`).
const REDIS_ROOT: &str = "cachectl/";
/// Bound on a server's start (and on its port closing after a kill).
const START_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Webdav,
    S3,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Webdav => "webdav",
            Kind::S3 => "s3",
        }
    }
}

/// Whether missing servers must fail the tests instead of skipping them.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `name` resolved through PATH, if it is there and executable.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A prerequisite is missing: fail under CI, else say so on stderr and let the test skip.
/// Returns `None` so callers can `?` out of a setup function.
#[track_caller]
pub fn missing<T>(what: &str, hint: &str) -> Option<T> {
    if ci() {
        panic!(
            "CI=true, but {what}: the remote-tier tests cannot run, and under CI they fail instead of skipping. Install it: {hint}"
        );
    }
    eprintln!("note: skipping a remote-tier test: {what} (install: {hint})");
    None
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn accepts(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A running server; dropping it kills it.
pub struct Server {
    pub kind: Kind,
    pub port: u16,
    /// The server's private dir: config, logs, data.
    pub dir: PathBuf,
    child: Option<Child>,
    redis_cli: Option<PathBuf>,
    /// Removed after the server is killed (fields drop after `Drop::drop`).
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Start a server of `kind`; `None` (after a note) when its binary is missing outside CI.
    pub fn start(kind: Kind) -> Option<Server> {
        let exe = match kind {
            Kind::Redis => which("redis-server").or_else(|| {
                missing("`redis-server` is not on PATH", "apt-get install redis-server")
            })?,
            Kind::Webdav => {
                let exe = which("nginx").or_else(|| {
                    missing(
                        "`nginx` is not on PATH",
                        "apt-get install nginx libnginx-mod-http-dav-ext",
                    )
                })?;
                if !Path::new(DAV_MODULE).is_file() {
                    missing::<()>(
                        &format!("the nginx WebDAV module {DAV_MODULE} is missing"),
                        "apt-get install libnginx-mod-http-dav-ext",
                    )?;
                }
                exe
            }
            Kind::S3 => which("s3s-fs").or_else(|| {
                missing(
                    "`s3s-fs` is not on PATH",
                    "cargo install s3s-fs --version 0.14.1 --features binary, and put ~/.cargo/bin on PATH",
                )
            })?,
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cachectl-srv-{}-", kind.name()))
            .tempdir()
            .expect("server temp dir");
        let dir = tmp.path().canonicalize().unwrap();
        // nginx workers run as www-data: every component of the path must be traversable.
        crate::util::set_mode(&dir, 0o755);
        let mut last_error = String::new();
        // A free port may be taken between finding and binding it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let mut server = Server {
                kind,
                port,
                dir: dir.clone(),
                child: None,
                redis_cli: which("redis-cli"),
                _tmp: None,
            };
            let mut cmd = server.command(&exe);
            let log = fs::File::create(dir.join("server.log")).unwrap();
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                // Its own process group: the kill reaches nginx's workers too.
                .process_group(0);
            let child = crate::util::spawn_guarded(&mut cmd);
            server.child = Some(child);
            match server.wait_ready() {
                Ok(()) => {
                    server._tmp = Some(tmp);
                    return Some(server);
                }
                Err(e) => {
                    last_error = e;
                    server.kill();
                }
            }
        }
        panic!("cannot start the {} test server: {last_error}", kind.name());
    }

    /// The command line that runs the server on `self.port`, after writing its files.
    fn command(&self, exe: &Path) -> Command {
        let d = &self.dir;
        let p = self.port;
        match self.kind {
            Kind::Redis => {
                let mut c = Command::new(exe);
                c.args(["--bind", "127.0.0.1", "--port", &p.to_string()])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .current_dir(d);
                c
            }
            Kind::Webdav => {
                let dav = d.join("dav");
                fs::create_dir_all(&dav).unwrap();
                fs::create_dir_all(d.join("tmp")).unwrap();
                // Running as root, the workers run as www-data, which must own the data dir
                // (else MKCOL gets 403); otherwise nginx cannot switch users at all.
                let root = unsafe { libc::geteuid() } == 0;
                let user = if root {
                    let mut chown = Command::new("chown");
                    chown.args(["-R", "www-data"]).arg(&dav);
                    let ok = crate::util::spawn_guarded(&mut chown)
                        .wait()
                        .is_ok_and(|s| s.success());
                    assert!(ok, "chown www-data {} failed", dav.display());
                    "user www-data;"
                } else {
                    ""
                };
                let d = d.display();
                let conf = format!(
                    "load_module {DAV_MODULE};
{user} worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off; client_max_body_size 0;
  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fcgi;
  uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
  server {{ listen 127.0.0.1:{p}; root {d}/dav;
    location / {{ dav_methods PUT DELETE MKCOL COPY MOVE; dav_ext_methods PROPFIND OPTIONS;
                 dav_access user:rw group:rw all:r; create_full_put_path on; }} }} }}
"
                );
                let conf_path = self.dir.join("nginx.conf");
                fs::write(&conf_path, conf).unwrap();
                let mut c = Command::new(exe);
                c.arg("-c")
                    .arg(&conf_path)
                    .arg("-e")
                    .arg(self.dir.join("error.log"))
                    .arg("-p")
                    .arg(&self.dir);
                c
            }
            Kind::S3 => {
                let data = d.join("data");
                fs::create_dir_all(data.join(S3_BUCKET)).unwrap();
                let mut c = Command::new(exe);
                c.args(["--host", "127.0.0.1", "--port", &p.to_string()])
                    .args(["--access-key", "AK", "--secret-key", "SK"])
                    .arg(&data);
                c
            }
        }
    }

    /// Wait (bounded) until the port accepts connections; an error if the server exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "it exited ({status}) while starting:\n{}",
                    self.logs()
                ));
            }
            if accepts(self.port) {
                // Ours, not a server that took the port first (then ours exits at once).
                std::thread::sleep(Duration::from_millis(20));
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    return Err(format!(
                        "it exited ({status}) while starting:\n{}",
                        self.logs()
                    ));
                }
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "port {} did not accept connections within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's own output and error log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["server.log", "error.log"] {
            if let Ok(s) = fs::read_to_string(self.dir.join(f)) {
                out.push_str(&format!("--- {f}\n{s}"));
            }
        }
        out
    }

    /// Kill the server (its whole process group) and wait until its port is closed.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) of the process group this fixture created for the server.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        let start = Instant::now();
        while accepts(self.port) && start.elapsed() < START_TIMEOUT {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freeze the server (SIGSTOP to its process group): connections are still accepted by the
    /// kernel, but nothing answers. The drop's SIGKILL ends it all the same.
    pub fn freeze(&self) {
        let pid = self.child.as_ref().expect("server is running").id() as libc::pid_t;
        // SAFETY: plain kill(2) of the process group this fixture created for the server.
        unsafe {
            libc::kill(-pid, libc::SIGSTOP);
        }
    }

    /// Let a frozen server carry on (SIGCONT).
    pub fn thaw(&self) {
        let pid = self.child.as_ref().expect("server is running").id() as libc::pid_t;
        // SAFETY: as in `freeze`.
        unsafe {
            libc::kill(-pid, libc::SIGCONT);
        }
    }

    /// The URL cachectl is given.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}/0", self.port),
            Kind::Webdav => format!("http://127.0.0.1:{}/cache", self.port),
            Kind::S3 => format!("s3://{S3_BUCKET}/{S3_PREFIX}"),
        }
    }

    /// The environment cachectl needs for this server (credentials and endpoint for S3).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("CACHECTL_REMOTE", self.url())];
        if self.kind == Kind::S3 {
            v.extend([
                ("AWS_ACCESS_KEY_ID", "AK".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "SK".to_owned()),
                (
                    "AWS_ENDPOINT_URL",
                    format!("http://127.0.0.1:{}", self.port),
                ),
                ("AWS_REGION", "us-east-1".to_owned()),
            ]);
        }
        v
    }

    /// Where the server keeps the objects under cachectl's root (WebDAV and S3).
    fn object_dir(&self) -> Option<PathBuf> {
        match self.kind {
            Kind::Redis => None,
            Kind::Webdav => Some(self.dir.join("dav/cache")),
            Kind::S3 => Some(self.dir.join("data").join(S3_BUCKET).join(S3_PREFIX)),
        }
    }

    /// Whether [`Self::objects`], [`Self::read`] and [`Self::write`] work for this server
    /// (Redis needs `redis-cli`).
    pub fn inspectable(&self) -> bool {
        self.kind != Kind::Redis || self.redis_cli.is_some()
    }

    fn redis_cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let cli = self.redis_cli.as_ref().expect("redis-cli");
        let mut cmd = Command::new(cli);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::util::spawn_guarded(&mut cmd);
        // redis-cli reads all of stdin (-x) before it says anything.
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Every object cachectl stored, as paths under its root (`ac/<key>`, `pr1/cas/<digest>`),
    /// sorted; `None` when the server cannot be inspected.
    pub fn objects(&self) -> Option<Vec<String>> {
        if !self.inspectable() {
            return None;
        }
        let mut v: Vec<String> = match self.object_dir() {
            Some(dir) => crate::util::files_under(&dir)
                .iter()
                .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
                .collect(),
            None => String::from_utf8(self.redis_cli(&["--scan"], None))
                .unwrap()
                .lines()
                .filter_map(|k| k.strip_prefix(REDIS_ROOT))
                .map(str::to_owned)
                .collect(),
        };
        v.sort();
        Some(v)
    }

    /// The stored bytes of object `name` (a path from [`Self::objects`]).
    pub fn read(&self, name: &str) -> Vec<u8> {
        match self.object_dir() {
            Some(dir) => fs::read(dir.join(name)).unwrap(),
            None => {
                let key = format!("{REDIS_ROOT}{name}");
                let mut out = self.redis_cli(&["--raw", "GET", &key], None);
                // --raw ends the value with a newline of its own.
                assert_eq!(out.pop(), Some(b'\n'), "redis-cli GET {key}");
                out
            }
        }
    }

    /// Replace the stored bytes of object `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) {
        match self.object_dir() {
            Some(dir) => fs::write(dir.join(name), bytes).unwrap(),
            None => {
                let key = format!("{REDIS_ROOT}{name}");
                let reply = self.redis_cli(&["-x", "SET", &key], Some(bytes));
                assert_eq!(String::from_utf8_lossy(&reply).trim(), "OK");
            }
        }
        assert!(self.read(name) == bytes, "rewriting {name} did not stick");
    }

    /// Flip one bit of object `name` at `offset` (negative: from the end).
    pub fn flip_byte(&self, name: &str, offset: isize) {
        let mut bytes = self.read(name);
        let i = if offset < 0 {
            bytes.len() - offset.unsigned_abs()
        } else {
            offset as usize
        };
        bytes[i] ^= 0x20;
        self.write(name, &bytes);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
