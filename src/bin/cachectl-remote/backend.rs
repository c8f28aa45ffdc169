//! Remote URL → OpenDAL operator, with timeouts and bounded retries.
//!
//! | URL | service | credentials |
//! |---|---|---|
//! | `s3://bucket/prefix` | S3 and compatible (MinIO, R2, Ceph) | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; `AWS_ENDPOINT_URL`, `AWS_REGION` |
//! | `redis://[user:pass@]host:port/db?ttl=7d` (`rediss://` for TLS) | Redis | the URL's userinfo |
//! | `http(s)://[user:pass@]host/path` | WebDAV (nginx dav + dav-ext, ...) | the URL's userinfo |
//! | `ghac://[prefix]` | GitHub Actions cache | `ACTIONS_*` from the runner |

use crate::transfer::Failure;
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use std::time::Duration;

/// Install process-wide defaults OpenDAL needs: the rustls crypto provider (ring, so that no C
/// toolchain for aws-lc is needed) and the HTTP transport.
fn install_defaults() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal::install_default();
    opendal_http_transport_reqwest::install_default();
}

struct Parsed<'a> {
    scheme: &'a str,
    user: Option<String>,
    password: Option<String>,
    host: &'a str,
    path: &'a str,
    query: &'a str,
}

fn parse(url: &str) -> Result<Parsed<'_>, Failure> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Failure::config("the remote URL has no scheme (s3://, redis://, https://, ghac://)")
    })?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (
                Some(a.to_owned()).filter(|s| !s.is_empty()),
                Some(b.to_owned()),
            ),
            None => (Some(u.to_owned()), None),
        },
    };
    Ok(Parsed {
        scheme,
        user,
        password,
        host,
        path,
        query,
    })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn build_error(e: opendal::Error) -> Failure {
    Failure::config(&format!("invalid remote configuration: {e}"))
}

/// Fail fast when nothing listens at `host` (refused, unresolvable, or no answer in `timeout`).
fn probe_tcp(
    host: &str,
    default_port: u16,
    timeout: Duration,
) -> Result<std::net::TcpStream, Failure> {
    use std::net::ToSocketAddrs;
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    let addrs: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|e| Failure::io(format!("cannot resolve {with_port}: {e}")))?
        .collect();
    let mut last = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Failure::timeout(format!("no answer from {with_port}"))
        }
        Some(e) => Failure::io(format!("cannot connect to {with_port}: {e}")),
        None => Failure::io(format!("{with_port} resolves to no address")),
    })
}

/// Send `AUTH` (when credentials are given) and `PING` over RESP and classify the answer.
fn probe_redis_auth(
    mut conn: std::net::TcpStream,
    user: Option<&str>,
    password: Option<&str>,
    timeout: Duration,
) -> Result<(), Failure> {
    use std::io::{BufRead, BufReader, Write};
    let resp = |parts: &[&str]| {
        let mut out = format!("*{}\r\n", parts.len());
        for p in parts {
            out.push_str(&format!("${}\r\n{p}\r\n", p.len()));
        }
        out
    };
    let mut request = String::new();
    match (user, password) {
        (Some(u), Some(p)) => request.push_str(&resp(&["AUTH", u, p])),
        (None, Some(p)) => request.push_str(&resp(&["AUTH", p])),
        _ => {}
    }
    request.push_str(&resp(&["PING"]));
    let io = |e: std::io::Error| Failure::io(format!("redis handshake: {e}"));
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    conn.set_write_timeout(Some(timeout)).map_err(io)?;
    conn.write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(conn);
    let replies = if password.is_some() { 2 } else { 1 };
    for _ in 0..replies {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Failure::timeout("no answer from redis".into())
            }
            _ => io(e),
        })?;
        let upper = line.to_uppercase();
        if upper.starts_with("-WRONGPASS")
            || upper.starts_with("-NOAUTH")
            || upper.contains("INVALID PASSWORD")
            || upper.contains("INVALID USERNAME")
        {
            return Err(Failure::auth(
                line.trim().trim_start_matches('-').to_owned(),
            ));
        }
    }
    Ok(())
}

pub fn operator(url: &str, timeout: Duration) -> Result<Operator, Failure> {
    install_defaults();
    let p = parse(url)?;
    let op = match p.scheme {
        "s3" => {
            if p.host.is_empty() {
                return Err(Failure::config("s3:// needs a bucket: s3://bucket/prefix"));
            }
            let mut b = opendal::services::S3::default()
                .bucket(p.host)
                .root(if p.path.is_empty() { "/" } else { p.path })
                .region(
                    &env("AWS_REGION")
                        .or_else(|| env("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".into()),
                );
            if let Some(ep) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
                b = b.endpoint(&ep);
            }
            if let (Some(id), Some(secret)) =
                (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
            {
                b = b.access_key_id(&id).secret_access_key(&secret);
            }
            if let Some(token) = env("AWS_SESSION_TOKEN") {
                b = b.session_token(&token);
            }
            Operator::new(b).map_err(build_error)?
        }
        "redis" | "rediss" => {
            // The Redis client keeps retrying a refused connection until the timeout; a dead
            // server should cost milliseconds, not the timeout times the retries.
            let conn = probe_tcp(p.host, 6379, timeout)?;
            if p.scheme == "redis" {
                // A wrong password makes the Redis client retry until the timeout; ask the
                // server directly so that it is reported as what it is, at once.
                probe_redis_auth(conn, p.user.as_deref(), p.password.as_deref(), timeout)?;
            }
            let db: i64 = p.path.trim_matches('/').parse().unwrap_or(0);
            let mut b = opendal::services::Redis::default()
                .endpoint(&format!("{}://{}", p.scheme, p.host))
                .db(db)
                .root("/cachectl");
            if let Some(u) = &p.user {
                b = b.username(u);
            }
            if let Some(pw) = &p.password {
                b = b.password(pw);
            }
            if let Some(ttl) = query_param(p.query, "ttl") {
                let d = cachectl::cli::units::parse_duration(ttl)
                    .map_err(|e| Failure::config(&format!("redis ttl: {e}")))?;
                b = b.default_ttl(d);
            }
            Operator::new(b).map_err(build_error)?
        }
        "http" | "https" => {
            let mut b = opendal::services::Webdav::default()
                .endpoint(&format!("{}://{}", p.scheme, p.host))
                .root(if p.path.is_empty() { "/" } else { p.path });
            if let Some(u) = &p.user {
                b = b.username(u);
            }
            if let Some(pw) = &p.password {
                b = b.password(pw);
            }
            Operator::new(b).map_err(build_error)?
        }
        "ghac" | "gha" => {
            let root = format!("/{}{}", p.host, p.path);
            let b = opendal::services::Ghac::default().root(&root);
            Operator::new(b).map_err(build_error)?
        }
        other => {
            return Err(Failure::config(&format!(
                "unsupported remote scheme `{other}://` (use s3://, redis://, http(s):// for WebDAV, or ghac://)"
            )));
        }
    };
    Ok(op
        .layer(
            TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(1)
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(400)),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = parse("redis://:pw@127.0.0.1:6379/2?ttl=7d").unwrap();
        assert_eq!(
            (p.scheme, p.host, p.path),
            ("redis", "127.0.0.1:6379", "/2")
        );
        assert_eq!((p.user, p.password.as_deref()), (None, Some("pw")));
        assert_eq!(query_param(p.query, "ttl"), Some("7d"));
        let p = parse("s3://bucket/some/prefix").unwrap();
        assert_eq!((p.host, p.path), ("bucket", "/some/prefix"));
        assert!(parse("no-scheme").is_err());
    }
}
